"""Does SMTP PIPELINING earn its place?

    .venv/bin/python bench/pipelining.py [--messages 100] [--delay 0.02]

Sends the same messages over one connection into Postfix's ``smtp-sink`` (Debian's postfix package; ``make
bench`` installs it), directly and through a local TCP proxy that waits ``--delay`` seconds before passing on
each read, in both directions (a round trip then costs about twice the delay, as to a remote relay):

- ``SmtpTransport`` with the sink offering PIPELINING: MAIL, RCPT and DATA in one write (digest);
- ``SmtpTransport`` with the sink not offering it (``smtp-sink -p``): one command per round trip;
- plain ``smtplib.SMTP.sendmail`` per message on one connection, for reference.

Prints messages per second for each. Every socket is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_day import start_sink

from digest.config_tables import SmtpConfig
from digest.email.mime import Outgoing
from digest.email.smtp import SmtpTransport


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that waits ``delay`` seconds before forwarding each read, both ways."""

    def __init__(self, target: int, delay: float) -> None:
        self.target, self.delay = target, delay
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def messages(n: int, size: int) -> list[Outgoing]:
    body = ("x" * 75 + "\n") * (size // 76)
    return [
        Outgoing(
            "digest@example.org",
            (f"r{i}@example.org",),
            f"<m{i}@example.org>",
            f"From: digest@example.org\nTo: r{i}@example.org\nMessage-ID: <m{i}@example.org>\n\n{body}".encode(),
        )
        for i in range(n)
    ]


def with_transport(port: int, batch: list[Outgoing]) -> float:
    config = SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=30)
    started = time.perf_counter()
    with SmtpTransport(config, "digest@example.org") as transport:
        for message in batch:
            transport.send(message)
    return len(batch) / (time.perf_counter() - started)


def with_smtplib(port: int, batch: list[Outgoing]) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as conn:
        for message in batch:
            conn.sendmail(message.sender, list(message.recipients), message.wire())
    return len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the proxy holds each read")
    parser.add_argument("--size", type=int, default=57_000)
    args = parser.parse_args()
    if not (shutil.which("smtp-sink") or Path("/usr/sbin/smtp-sink").exists()):
        sys.exit("needs Postfix's smtp-sink (Debian's postfix package; make bench installs it)")
    batch = messages(args.messages, args.size)
    rows = []
    for offered in (True, False):
        proc, port, _ = start_sink(pipelining=offered)
        proxy = DelayProxy(port, args.delay)
        try:
            name = "SmtpTransport, PIPELINING offered" if offered else "SmtpTransport, PIPELINING not offered"
            rows.append((name, with_transport(port, batch), with_transport(proxy.port, batch)))
            if not offered:
                rows.append(
                    ("plain smtplib.sendmail", with_smtplib(port, batch), with_smtplib(proxy.port, batch))
                )
        finally:
            proxy.close()
            proc.terminate()
            proc.wait()
    delay_ms = args.delay * 1000
    print(f"{args.messages} messages of {args.size:,} bytes over one connection into smtp-sink\n")
    print(f"| sender | messages/s, direct | messages/s, {delay_ms:.0f} ms per read each way |")
    print("| --- | ---: | ---: |")
    for name, direct, delayed in rows:
        print(f"| {name} | {direct:,.0f} | {delayed:,.1f} |")
    gain = rows[0][2] / rows[1][2]
    print(f"\nPIPELINING behind the added latency: {gain:.2f}x the messages per second")


if __name__ == "__main__":
    main()
