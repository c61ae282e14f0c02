"""Reading NATS header blocks: the same map nats-py makes, for every block the server sends."""

from __future__ import annotations

import random

import pytest
from nats.aio.client import Client

from narun.protocol.nats import header_block, header_value, parse_header_block


def nats_py(raw: bytes) -> dict[str, str]:
    """What nats-py 2.x gives as ``Msg.headers`` for ``raw`` (``None`` read as empty)."""
    coro = _CLIENT._process_headers(raw)
    try:
        coro.send(None)  # it never suspends: run it to its end without an event loop
    except StopIteration as done:
        return done.value or {}
    raise AssertionError("nats-py's header parser suspended")


_CLIENT = Client()


BLOCKS = [
    b"",
    b"NATS/1.0\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",  # no responders
    b"NATS/1.0 503\r\nNats-Subject: svc\r\n\r\n",  # no responders, nats-server 2.11+
    b"NATS/1.0 404 No Messages\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0 100 FlowControl Request\r\n\r\n",
    b"NATS/1.0 503\r\nA: 1\r\n\r\n",
    b"NATS/1.0\r\nContent-Type: application/bhttp\r\nNarun-Request-Id: abc\r\n\r\n",
    b"NATS/1.0\r\nA: 1\r\nA: 2\r\nB:3\r\nC:\tx \r\n\r\n",
    b"NATS/1.0\r\nNo colon here\r\nBad Name: x\r\n: empty name\r\nV: caf\xc3\xa9 \xff\r\n\r\n",
    b"NATS/1.0\r\nStatus: 503\r\n\r\n",
    b"NATS/1.0\r\nNats-Service-Error: boom: with colon\r\nNats-Service-Error-Code: 500\r\n\r\n",
    header_block({"Content-Type": "application/bhttp", "Narun-Deadline": "1700000000123"}),
]


@pytest.mark.parametrize("raw", BLOCKS)
def test_same_headers_as_nats_py(raw: bytes) -> None:
    headers, status, description = parse_header_block(raw)
    assert headers == nats_py(raw)
    assert status == headers.get("Status", "")
    assert description == headers.get("Description", "")


def test_no_responders_and_inline_status() -> None:
    assert parse_header_block(b"NATS/1.0 503\r\n\r\n") == ({"Status": "503"}, "503", "")
    headers, status, description = parse_header_block(
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Stream: 7\r\n\r\n"
    )
    assert (status, description) == ("100", "Idle Heartbeat")
    assert headers["Nats-Last-Stream"] == "7"


def test_a_repeated_header_keeps_its_last_value() -> None:
    headers, _, _ = parse_header_block(b"NATS/1.0\r\nX: 1\r\nX: 2\r\n\r\n")
    assert headers == {"X": "2"}


@pytest.mark.parametrize("raw", BLOCKS)
@pytest.mark.parametrize("name", ["Status", "Description", "A", "Content-Type", "Missing", "V"])
def test_header_value_is_a_lookup_in_the_parsed_block(raw: bytes, name: str) -> None:
    assert header_value(raw, name) == parse_header_block(raw)[0].get(name)


_PIECES = [
    b"NATS/1.0",
    b" ",
    b"503",
    b"100",
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b": ",
    b"A",
    b"Nats-Last-Stream",
    b"Idle Heartbeat",
    b"\t",
    b"x y",
    b"\xc3\xa9",
    b"1",
]


def test_random_blocks_read_as_nats_py_reads_them() -> None:
    rng = random.Random(14)
    compared = 0
    for _ in range(3000):
        raw = b"NATS/1.0" + b"".join(rng.choice(_PIECES) for _ in range(rng.randrange(12)))
        try:
            expected = nats_py(raw)
        except Exception:
            # nats-py fails on this one (the server never sends it): ours must not raise.
            parse_header_block(raw)
            continue
        compared += 1
        assert parse_header_block(raw)[0] == expected, raw
    assert compared > 1000
