"""The driver of bench/sites.sh (run by it).

deploy URL OPERATOR_TOKEN_FILE SITES CONCURRENCY NAMES_FILE: a reseller, 100 clients, SITES sites
    spread over them, each deployed from a zip in the same request path the CLI's zip deploy takes;
    prints the rate per 10,000 sites and writes the site names to NAMES_FILE.
first URL NAMES_FILE N: the first request to N sites (random order, sequential), then a second
    request to the same sites; prints p50, p99 and max of each.
"""

import http.client
import io
import json
import random
import sys
import threading
import time
import zipfile
from urllib.parse import urlparse


def conn(url):
    u = urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def call(c, method, path, token, body=None, ctype="application/json", host=None):
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if host:
        headers["Host"] = host
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status >= 300 and host is None:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return r.status, data


def site_zip(i):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("index.html", f"<!doctype html><h1>Site {i}</h1><link rel=stylesheet href=/s.css>")
        z.writestr("s.css", "h1 { color: #333; font-family: sans-serif; }\n")
    return buf.getvalue()


def deploy(url, op_file, sites, concurrency, names_file):
    op = open(op_file).read().strip()
    c = conn(url)
    _, data = call(c, "POST", "/api/v1/admin/resellers", op, {"name": "Many", "email": "ops@many.test"})
    key = json.loads(data)["key"]["key"]
    tokens = []
    for u in range(100):
        _, data = call(c, "POST", "/api/v1/access_tokens", key, {"user": {"email": f"c{u}@many.test"}})
        tokens.append(json.loads(data)["access_token"])
    names = [f"s{i:06d}" for i in range(sites)]
    done = [0]
    lock = threading.Lock()
    blocks = []
    t0 = time.time()
    last = [t0]

    def worker(k):
        c = conn(url)
        for i in range(k, sites, concurrency):
            tok = tokens[i % len(tokens)]
            call(c, "POST", "/api/v1/sites", tok, {"name": names[i]})
            call(c, "POST", f"/api/v1/sites/{names[i]}/deploys", tok, site_zip(i), "application/zip")
            with lock:
                done[0] += 1
                if done[0] % 10000 == 0:
                    now = time.time()
                    blocks.append(10000 / (now - last[0]))
                    last[0] = now
                    print(f"  {done[0]} sites, {blocks[-1]:.0f} sites/s", flush=True)

    failed = []

    def guarded(k):
        try:
            worker(k)
        except Exception as e:  # one failure fails the run
            failed.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    took = time.time() - t0
    print(f"deployed {sites} sites in {took:.0f} s ({sites / took:.0f} sites/s, each a site and a zip deploy)")
    if len(blocks) >= 2:
        print(f"last 10,000 against the first: {blocks[-1] / blocks[0]:.2f}x")
    open(names_file, "w").write("\n".join(names))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def first(url, names_file, n):
    names = open(names_file).read().split()
    random.seed(1)
    picked = random.sample(names, min(n, len(names)))
    for label in ("first request", "second request"):
        c = conn(url)
        times = []
        for name in picked:
            t = time.perf_counter()
            status, body = call(c, "GET", "/", None, host=f"{name}.localhost")
            times.append((time.perf_counter() - t) * 1000)
            if status != 200 or b"Site" not in body:
                raise RuntimeError(f"{name}: {status} {body[:100]!r}")
        print(f"{label} to {len(picked)} sites: p50 {pct(times, 0.5):.2f} ms, p99 {pct(times, 0.99):.2f} ms, max {max(times):.2f} ms")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "deploy":
        deploy(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif cmd == "first":
        first(sys.argv[2], sys.argv[3], int(sys.argv[4]))
