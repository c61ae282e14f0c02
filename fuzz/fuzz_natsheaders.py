"""Coverage-guided fuzzing of the NATS header block reader with atheris.

``parse_header_block`` must never raise, and wherever nats-py's own reader gives an
answer (it raises on some blocks nats-server never sends) ours must be the same map.

    python -m fuzz.fuzz_natsheaders -runs=1000000
"""

from __future__ import annotations

import atheris

import fuzz

with atheris.instrument_imports():
    from narun.protocol.nats import header_value, parse_header_block

from nats.aio.client import Client

SEEDS = [
    b"NATS/1.0\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 503\r\nNats-Subject: svc\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0\r\nContent-Type: application/bhttp\r\nA: 1\r\nA: 2\r\nB:\tx \r\n\r\n",
]

_CLIENT = Client()


def nats_py(raw: bytes) -> dict[str, str] | None:
    """nats-py's reading of ``raw`` (empty for none), or None where it raises."""
    coro = _CLIENT._process_headers(raw)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value or {}
    except Exception:
        return None
    coro.close()
    return None


def check(data: bytes) -> None:
    """One fuzz input, read as a header block after ``NATS/1.0``."""
    raw = b"NATS/1.0" + data
    headers, status, description = parse_header_block(raw)
    assert status == headers.get("Status", "")
    assert description == headers.get("Description", "")
    expected = nats_py(raw)
    if expected is not None:
        assert headers == expected, (raw, headers, expected)
    for name in ("Status", "A", "Nats-Subject"):
        assert header_value(raw, name) == headers.get(name)


def main() -> None:
    """Run atheris with the command-line arguments (``-runs=N`` etc.)."""
    fuzz.run(check, (seed[len(b"NATS/1.0") :] for seed in SEEDS), "natsheaders")


if __name__ == "__main__":
    main()
