"""``make soak``: a fixed number of requests at saturation through the whole narun path.

Starts nats-server, one consumer and one gateway (the benchmark's ``narun`` stack),
then sends ``--requests`` POSTs over ``--connections`` keep-alive connections as fast as
they are answered, from a small raw-socket HTTP/1.1 client (asyncio, one process).
It checks every answer (status 200 and the expected body), samples the RSS of the
gateway and the consumer at the start, the middle and the end, and exits non-zero if
any request failed or went unanswered.

    python -m bench.soak --requests 300000 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.procs import Procs, rss_bytes
from bench.stacks import BODY, STACKS, check

EXPECTED = b'{"message": "Hello, NATS User!"}'


@dataclass
class Tally:
    """What the client saw."""

    ok: int = 0
    bad: int = 0
    unanswered: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _connection(host: str, port: int, path: str, count: int, tally: Tally) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for done in range(count):
            writer.write(request)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                tally.unanswered += count - done
                return
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status == 200 and body.rstrip(b"\n") == EXPECTED:
                tally.ok += 1
            else:
                tally.bad += 1
    finally:
        writer.close()


async def _drive(url: str, requests: int, connections: int, tally: Tally) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    share, extra = divmod(requests, connections)
    await asyncio.gather(
        *(
            _connection(host, port, parts.path, share + (1 if i < extra else 0), tally)
            for i in range(connections)
        )
    )


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the counts and RSS samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    stack = next(s for s in STACKS if s.key == "narun")
    with tempfile.TemporaryDirectory(prefix="narun-soak-") as tmp, Procs(Path(tmp)) as procs:
        running = stack.start(procs, Path(tmp))
        check(running.url)
        watched = {role: procs.pids(role)[0] for role in ("gateway", "consumer")}
        samples: dict[str, list[int]] = {role: [] for role in watched}

        def sample() -> None:
            for role, pid in watched.items():
                samples[role].append(rss_bytes(pid))

        tally = Tally()
        half = args.requests // 2
        started = time.monotonic()
        sample()
        asyncio.run(_drive(running.url, half, args.connections, tally))
        sample()
        asyncio.run(_drive(running.url, args.requests - half, args.connections, tally))
        sample()
        elapsed = time.monotonic() - started
    sent = args.requests
    print(f"soak: {sent} requests over {args.connections} connections in {elapsed:.1f} s")
    print(f"      {sent / elapsed:,.0f} req/s; answered OK {tally.ok}, answered with an error")
    print(f"      {tally.bad}, unanswered {tally.unanswered}; statuses {tally.statuses}")
    for role, values in samples.items():
        start, middle, end = (_mib(v) for v in values)
        print(f"      {role:<9} RSS start {start}, middle {middle}, end {end}")
    return 0 if tally.ok == sent else 1


if __name__ == "__main__":
    sys.exit(main())
