"""Micro-benchmark of the Binary HTTP codec on the messages the HTTP rows exchange."""

from __future__ import annotations

import timeit
from collections.abc import Callable

from narun.protocol.bhttp import (
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

__all__ = ["REQUEST", "RESPONSE", "run_codec"]

# What the gateway encodes for a browser-ish JSON POST (Host became the authority).
REQUEST = Request(
    method="POST",
    scheme="http",
    authority="127.0.0.1:8080",
    path="/hello/",
    headers=(
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        (b"accept", b"application/json"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"content-type", b"application/json"),
        (b"content-length", b"20"),
    ),
    content=b'{"name":"NATS User"}',
)
RESPONSE = Response(
    status=200,
    headers=(
        (b"content-type", b"application/json"),
        (b"content-length", b"32"),
        (b"cache-control", b"no-store"),
    ),
    content=b'{"message": "Hello, NATS User!"}',
)


def _best_us(fn: Callable[[], object], *, seconds: float) -> float:
    """Best of 5 repeats of a loop sized to take about ``seconds / 5`` each, in us per call."""
    timer = timeit.Timer(fn)
    number, took = timer.autorange()
    number = max(1, int(number * (seconds / 5) / max(took, 1e-9)))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def run_codec(*, seconds: float = 2.5) -> dict[str, float]:
    """Microseconds per operation, and per request/response round trip (all four)."""
    wire_request = encode_request(REQUEST)
    wire_response = encode_response(RESPONSE)
    assert decode_request(wire_request) == REQUEST
    assert decode_response(wire_response) == RESPONSE
    each = seconds / 4
    out = {
        "encode_request": _best_us(lambda: encode_request(REQUEST), seconds=each),
        "decode_request": _best_us(lambda: decode_request(wire_request), seconds=each),
        "encode_response": _best_us(lambda: encode_response(RESPONSE), seconds=each),
        "decode_response": _best_us(lambda: decode_response(wire_response), seconds=each),
    }
    out["round_trip"] = sum(out.values())
    return out
