"""A real SMTP server on loopback for the mail tests (aiosmtpd): every message it receives is
written, as received, to DIR/<n>.eml with its envelope in DIR/<n>.json. Prints the port it
listens on, then serves until killed. Usage: smtp_sink.py DIR PORT"""
import asyncio
import json
import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        with open(base + ".json.tmp", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 Message accepted"


def main():
    directory = sys.argv[1]
    port = int(sys.argv[2])
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print(controller.server.sockets[0].getsockname()[1], flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
