"""gRPC servicers for the end-to-end tests (``narun serve tests.support.grpc_apps:register``).

Besides the example ``hello.v1.Greeter``, three raw-bytes services share one method set,
implemented twice: ``async def`` (``narun.test.AsyncProbe`` and, for a route with a short
timeout, ``narun.test.SlowProbe``) and plain functions run on the thread pool
(``narun.test.SyncProbe``). Methods (request and response are raw bytes):

- ``Echo``: answers the request; sends the invocation metadata back as initial
  metadata (``user-agent`` left out) and sets trailing metadata with the remaining time,
  the peer, a binary item and a repeated key.
- ``Abort``: request ``CODE:message``; aborts with that status.
- ``SetCode``: request ``CODE:message``; sets that status and returns normally.
- ``Sleep``: request ``seconds``; sleeps, answers ``slept``.
- ``Crash``: raises an exception whose text must never reach a client.
- ``Metadata``: answers the invocation metadata (text values) as JSON pairs.
- ``ServerStream`` / ``ClientStream``: streaming methods (narun answers UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from examples.grpc_hello.server import register as register_greeter
from narun.consumer import GRPCTarget

SECRET = "secret-internal-detail-8642"
TRAILING_BIN = bytes([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF])

AioContext = grpc.aio.ServicerContext[bytes, bytes]
Handlers = dict[str, "grpc.RpcMethodHandler[Any, Any]"]


def _code_and_message(request: bytes) -> tuple[grpc.StatusCode, str]:
    name, _, message = request.decode().partition(":")
    return grpc.StatusCode[name], message


Pairs = tuple[tuple[str, str | bytes], ...]


def _echoed(metadata: Any) -> Pairs:
    return tuple((k, v) for k, v in metadata if k != "user-agent")


def _metadata_json(metadata: Any) -> bytes:
    return json.dumps([(k, v) for k, v in metadata if isinstance(v, str)]).encode()


def _trailing(remaining: float | None, peer: str) -> Pairs:
    return (
        ("time-remaining", repr(remaining)),
        ("peer", peer),
        ("t-bin", TRAILING_BIN),
        ("rep", "1"),
        ("rep", "2"),
    )


class AsyncProbe:
    """The probe methods as ``async def`` (grpc.aio style)."""

    async def Echo(self, request: bytes, context: AioContext) -> bytes:
        await context.send_initial_metadata(_echoed(context.invocation_metadata() or ()))
        context.set_trailing_metadata(_trailing(context.time_remaining(), context.peer()))
        return request

    async def Abort(self, request: bytes, context: AioContext) -> bytes:
        code, message = _code_and_message(request)
        await context.abort(code, message)

    async def SetCode(self, request: bytes, context: AioContext) -> bytes:
        code, message = _code_and_message(request)
        context.set_code(code)
        context.set_details(message)
        return b"ignored"

    async def Sleep(self, request: bytes, context: AioContext) -> bytes:
        await asyncio.sleep(float(request))
        return b"slept"

    async def Crash(self, request: bytes, context: AioContext) -> bytes:
        raise RuntimeError(SECRET)

    async def Metadata(self, request: bytes, context: AioContext) -> bytes:
        return _metadata_json(context.invocation_metadata() or ())

    async def ServerStream(self, request: bytes, context: AioContext) -> AsyncIterator[bytes]:
        yield request

    async def ClientStream(self, requests: AsyncIterator[bytes], context: AioContext) -> bytes:
        return b"".join([r async for r in requests])

    async def Ticks(self, request: bytes, context: AioContext) -> AsyncIterator[bytes]:
        count, delay, size = _ticks(request)
        await context.send_initial_metadata((("kind", "ticks"),))
        for i in range(count):
            if i and delay:
                await asyncio.sleep(delay)
            yield _tick(i, size)
        context.set_trailing_metadata((("done", "yes"),))

    async def Bidi(
        self, requests: AsyncIterator[bytes], context: AioContext
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            if message == b"abort":
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "told to", (("why", "asked"),)
                )
            yield b"echo:" + message

    async def Forever(self, request: bytes, context: AioContext) -> AsyncIterator[bytes]:
        # Reports how the call ended in the file named by the request.
        yield b"started"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            report = f"cancelled seen={context.cancelled()}"
            await asyncio.to_thread(Path(request.decode()).write_text, report)
            raise


class SyncProbe:
    """The probe methods as plain functions (run on the consumer's thread pool)."""

    def Echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.send_initial_metadata(_echoed(context.invocation_metadata()))
        context.set_trailing_metadata(_trailing(context.time_remaining(), context.peer()))
        return request

    def Abort(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        code, message = _code_and_message(request)
        context.abort(code, message)

    def SetCode(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        code, message = _code_and_message(request)
        context.set_code(code)
        context.set_details(message)
        return b"ignored"

    def Sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        deadline = time.monotonic() + float(request)
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.02)
        return b"slept"

    def Crash(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        raise RuntimeError(SECRET)

    def Metadata(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return _metadata_json(context.invocation_metadata())

    def ServerStream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield request

    def ClientStream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return b"".join(requests)

    def Ticks(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count, delay, size = _ticks(request)
        context.send_initial_metadata((("kind", "ticks"),))
        for i in range(count):
            if i and delay:
                time.sleep(delay)
            yield _tick(i, size)
        context.set_trailing_metadata((("done", "yes"),))

    def Bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for message in requests:
            if message == b"abort":
                context.set_trailing_metadata((("why", "asked"),))
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "told to")
            yield b"echo:" + message

    def Forever(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"started"
        while context.is_active():
            time.sleep(0.05)
        Path(request.decode()).write_text(f"cancelled seen={not context.is_active()}")


def _ticks(request: bytes) -> tuple[int, float, int]:
    """``count[,delay[,size]]``: how many messages, seconds apart, of about what size."""
    count, delay, size, *_ = [*request.decode().split(","), "", "", ""]
    return int(count), float(delay or 0), int(size or 0)


def _tick(i: int, size: int) -> bytes:
    """Message ``i`` of Ticks: ``i:<when it was made>:`` padded to ``size`` bytes."""
    head = f"{i}:{time.time():.6f}:".encode()
    return head + b"." * max(0, size - len(head))


def probe_handlers(probe: AsyncProbe | SyncProbe) -> Handlers:
    """Method handlers without (de)serializers: raw bytes in and out."""
    return {
        "Echo": grpc.unary_unary_rpc_method_handler(probe.Echo),
        "Abort": grpc.unary_unary_rpc_method_handler(probe.Abort),
        "SetCode": grpc.unary_unary_rpc_method_handler(probe.SetCode),
        "Sleep": grpc.unary_unary_rpc_method_handler(probe.Sleep),
        "Crash": grpc.unary_unary_rpc_method_handler(probe.Crash),
        "Metadata": grpc.unary_unary_rpc_method_handler(probe.Metadata),
        "ServerStream": grpc.unary_stream_rpc_method_handler(probe.ServerStream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(probe.ClientStream),
        "Ticks": grpc.unary_stream_rpc_method_handler(probe.Ticks),
        "Bidi": grpc.stream_stream_rpc_method_handler(probe.Bidi),
        "Forever": grpc.unary_stream_rpc_method_handler(probe.Forever),
    }


def register(target: GRPCTarget) -> None:
    """Register every test service on ``target``, as generated code would (and more)."""
    register_greeter(target)
    for name in ("narun.test.AsyncProbe", "narun.test.SlowProbe"):
        handlers = probe_handlers(AsyncProbe())
        target.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        target.add_registered_method_handlers(name, handlers)
    # Generic handler only: exercises lookup through GenericRpcHandler.service().
    sync = grpc.method_handlers_generic_handler("narun.test.SyncProbe", probe_handlers(SyncProbe()))
    target.add_generic_rpc_handlers((sync,))
