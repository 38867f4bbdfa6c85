"""Verifies a message's DKIM signature with dkimpy, looking the key up in the given DNS server
(pebble-challtestsrv in the tests). Prints the signing domain and selector; exits 0 only if the
signature verifies. With NAME and VALUE, NAME answers VALUE without DNS (for a record too long
for the test DNS server, which holds at most 255 characters per TXT record).
Usage: dkim_verify.py MESSAGE_FILE DNS_HOST:PORT [NAME VALUE]"""
import sys

import dkim
import dns.resolver


def main():
    path, server = sys.argv[1], sys.argv[2]
    given = {sys.argv[3].rstrip(".") + ".": sys.argv[4].encode()} if len(sys.argv) > 4 else {}
    host, port = server.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        if name.rstrip(".") + "." in given:
            return given[name.rstrip(".") + "."]
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except Exception as e:  # noqa: BLE001 - report and fail the lookup
            print(f"lookup of {name} failed: {e}", file=sys.stderr)
            return None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    message = open(path, "rb").read()
    verifier = dkim.DKIM(message)
    ok = verifier.verify(dnsfunc=dnsfunc)
    print(f"d={verifier.domain.decode() if verifier.domain else ''} "
          f"s={verifier.selector.decode() if verifier.selector else ''} verified={ok}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
