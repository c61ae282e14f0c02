"""The gRPC health messages, read and written without protobuf classes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn, cast

import grpc
import pytest

from narun.gateway import health


@pytest.mark.parametrize(
    ("data", "service"),
    [
        (b"", ""),
        (b"\x0a\x00", ""),
        (b"\x0a\x10hello.v1.Greeter", "hello.v1.Greeter"),
        # unknown fields of every wire type are skipped
        (b"\x10\x96\x01\x19" + bytes(8) + b"\x25" + bytes(4) + b"\x0a\x01x", "x"),
    ],
)
def test_check_request_service(data: bytes, service: str) -> None:
    assert health.decode_check_request(data) == service


@pytest.mark.parametrize("data", [b"\x0a", b"\x0a\x05abc", b"\x10", b"\x0b", b"\x80"])
def test_malformed_check_requests_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"truncated|wire type"):
        health.decode_check_request(data)


def test_check_response_status_field() -> None:
    assert health.encode_check_response(health.SERVING) == b"\x08\x01"
    assert health.encode_check_response(health.NOT_SERVING) == b"\x08\x02"


class AbortingContext:
    """The part of a ``grpc.aio.ServicerContext`` the handler uses."""

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(code, details)


class Aborted(Exception):
    pass


@pytest.mark.parametrize(("ready", "answer"), [(True, b"\x08\x01"), (False, b"\x08\x02")])
async def test_check_follows_readiness(ready: bool, answer: bytes) -> None:
    handler = health.check_handler(lambda: (ready, "why"), {"a.B"})
    check = cast(Callable[[bytes, AbortingContext], Awaitable[bytes]], handler.unary_unary)
    context = AbortingContext()
    assert await check(b"", context) == answer
    assert await check(b"\x0a\x03a.B", context) == answer
    with pytest.raises(Aborted) as info:
        await check(b"\x0a\x03c.D", context)
    assert info.value.args[0] == grpc.StatusCode.NOT_FOUND
    with pytest.raises(Aborted) as info:
        await check(b"\x0a", context)
    assert info.value.args[0] == grpc.StatusCode.INVALID_ARGUMENT
