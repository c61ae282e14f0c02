"""Coverage-guided fuzzing of the gateway's HTTP front (its request parsing path).

Random bytes go into the real protocol (uvicorn's httptools parser with the gateway's
fast path and its hand-over to the ASGI app) on a fake connection with a requester that
answers at once; :func:`fuzz.front_harness.check` says what must hold. The first input
byte chooses where the bytes are split into two reads (0: one read).

    python -m fuzz.fuzz_front -runs=20000          # what `make fuzz` runs
"""

from __future__ import annotations

import atheris

import fuzz

# Only narun's own code is instrumented: instrumenting uvicorn, nats-py, pydantic and
# the rest would take most of a minute at every start.
with atheris.instrument_imports(include=["narun", "fuzz"]):
    from fuzz import front_harness

SEEDS = [
    b"\x00GET /a/x?q=1 HTTP/1.1\r\nHost: gw\r\nX-Request-ID: abc\r\n\r\n",
    b"\x10POST /a/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
    b"GET /a/y HTTP/1.1\r\n\r\nHEAD /a/z HTTP/1.0\r\n\r\n",
    b"\x00POST /a/c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"\x00PUT /b HTTP/1.1\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
    b"\x00GET /nope HTTP/1.1\r\nConnection: close\r\n\r\nGET /a/ HTTP/1.1\r\n\r\n",
    b"\x00GET /a/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
]


def check(data: bytes) -> None:
    """One fuzz input: split point, then the bytes of the connection."""
    if not data:
        return
    front_harness.check(data[1:], split=data[0])


def main() -> None:
    """Run atheris with the command-line arguments (``-runs=N`` etc.)."""
    import logging

    # uvicorn and the gateway log the requests they refuse: no use for the lines here.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    logging.getLogger("narun").setLevel(logging.CRITICAL)
    fuzz.run(check, SEEDS, "front")


if __name__ == "__main__":
    main()
