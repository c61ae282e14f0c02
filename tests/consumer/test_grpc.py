"""The gRPC consumer in process: registration target, dispatch, servicer contexts.

No NATS here: :class:`GRPCEndpoint` is called with hand-made messages and its replies
are decoded with :mod:`narun.protocol.grpcwire`. The wire end to end is ``tests/e2e/test_grpc.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from nats.aio.msg import Msg

from examples.grpc_hello import hello_pb2
from examples.grpc_hello.server import Greeter
from examples.grpc_hello.server import register as register_greeter
from narun.consumer import GRPCConsumer, GRPCTarget
from narun.consumer.grpc.consumer import GRPCEndpoint
from narun.consumer.grpc.context import AsyncContext, SyncContext
from narun.consumer.service import Reply
from narun.errors import ConfigError
from narun.protocol import grpcwire, wire
from narun.protocol.grpcwire import GRPCRequest, GRPCStatus, Metadata, Metadatum, StatusCode

Behavior = Callable[[Any, Any], Any]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True)


def target_with(
    behavior: Behavior,
    *,
    kind: str = "unary_unary",
    deserializer: Callable[[bytes], Any] | None = None,
    serializer: Callable[[Any], bytes] | None = None,
) -> GRPCTarget:
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    target = GRPCTarget()
    target.add_registered_method_handlers(
        "t.Svc",
        {"M": make(behavior, request_deserializer=deserializer, response_serializer=serializer)},
    )
    return target


def message(data: bytes = b"", headers: dict[str, str] | None = None) -> Msg:
    return Msg(_client=cast(Any, None), subject="svc", data=data, headers=headers)


def request(data: bytes = b"", extra: dict[str, str] | None = None) -> Msg:
    return message(data, {wire.GRPC_METHOD: "/t.Svc/M", **(extra or {})})


def md(*pairs: tuple[str, str | bytes]) -> Metadata:
    return tuple(Metadatum(k, v) for k, v in pairs)


async def call(
    behavior: Behavior, executor: ThreadPoolExecutor, msg: Msg | None = None, **handler: Any
) -> tuple[Reply, GRPCStatus]:
    endpoint = GRPCEndpoint(target_with(behavior, **handler), executor=executor)
    reply = await endpoint(msg if msg is not None else request(b"in"))
    return reply, grpcwire.decode_reply(reply.headers)


async def echo(req: bytes, context: Any) -> bytes:
    return req


async def boom(req: bytes, context: Any) -> bytes:
    raise RuntimeError("boom")


# -- the endpoint ---------------------------------------------------------------------


async def test_ok_reply(executor: ThreadPoolExecutor) -> None:
    reply, status = await call(echo, executor)
    assert reply.data == b"in"
    assert reply.error is None
    assert reply.headers == {wire.GRPC_STATUS: "0"}
    assert status == GRPCStatus()


async def test_missing_method_header_is_invalid_argument(executor: ThreadPoolExecutor) -> None:
    for msg in (message(b"x"), message(b"x", {"Other": "1"})):
        reply, status = await call(echo, executor, msg)
        assert status.code == StatusCode.INVALID_ARGUMENT
        assert status.message == "Missing required X-Original-Grpc-Method header"
        assert reply.headers is not None
        assert reply.headers[wire.SERVICE_ERROR_CODE] == "3"
        assert reply.error == "gRPC INVALID_ARGUMENT"


async def test_malformed_metadata_is_invalid_argument(executor: ThreadPoolExecutor) -> None:
    _, status = await call(echo, executor, request(extra={wire.GRPC_METADATA: "no-equals"}))
    assert status.code == StatusCode.INVALID_ARGUMENT


async def test_unknown_method_is_unimplemented(executor: ThreadPoolExecutor) -> None:
    msg = message(b"", {wire.GRPC_METHOD: "/t.Svc/Other"})
    _, status = await call(echo, executor, msg)
    assert status == GRPCStatus(StatusCode.UNIMPLEMENTED, "Method not found!")


class UnhashableBehavior:
    """A servicer callable that cannot be a dict key (its kind cannot be kept)."""

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, req: bytes, context: Any) -> bytes:
        return b"sync:" + req


async def test_callable_servicers_of_either_kind(executor: ThreadPoolExecutor) -> None:
    for _ in range(2):  # also once their kind is known
        reply, status = await call(UnhashableBehavior(), executor)
        assert (reply.data, status) == (b"sync:in", GRPCStatus())
        reply, status = await call(echo, executor)
        assert (reply.data, status) == (b"in", GRPCStatus())


async def test_a_unary_method_says_so_when_offered_a_stream(executor: ThreadPoolExecutor) -> None:
    offered, status = await call(echo, executor, request(b"in", {wire.STREAM: "65536"}))
    assert offered.data == b"in"
    assert status == GRPCStatus()
    assert offered.headers is not None
    assert offered.headers[wire.GRPC_UNARY] == "1"
    # Also when the servicer fails: the method's kind is what counts.
    failed, status = await call(boom, executor, request(b"in", {wire.STREAM: "65536"}))
    assert status.code == StatusCode.UNKNOWN
    assert failed.headers is not None
    assert failed.headers[wire.GRPC_UNARY] == "1"
    # Not offered a stream: nothing to say.
    plain, _ = await call(echo, executor)
    assert plain.headers is not None
    assert wire.GRPC_UNARY not in plain.headers


async def test_a_streaming_method_never_says_unary(executor: ThreadPoolExecutor) -> None:
    # No stream hub here: the offer cannot be taken, the answer is UNIMPLEMENTED.
    msg = request(b"in", {wire.STREAM: "65536"})
    reply, status = await call(echo, executor, msg, kind="unary_stream")
    assert status.code == StatusCode.UNIMPLEMENTED
    assert reply.headers is not None
    assert wire.GRPC_UNARY not in reply.headers


@pytest.mark.parametrize("kind", ["unary_stream", "stream_unary", "stream_stream"])
async def test_streaming_methods_are_unimplemented(executor: ThreadPoolExecutor, kind: str) -> None:
    _, status = await call(echo, executor, kind=kind)
    assert status.code == StatusCode.UNIMPLEMENTED
    assert "streaming" in status.message


async def test_undecodable_request_is_internal(executor: ThreadPoolExecutor) -> None:
    _, status = await call(
        echo, executor, request(b"\xff\xff"), deserializer=hello_pb2.SayHelloRequest.FromString
    )
    assert status == GRPCStatus(StatusCode.INTERNAL, "Exception deserializing request!")


async def test_unserializable_response_is_internal(executor: ThreadPoolExecutor) -> None:
    async def returns_none(req: bytes, context: Any) -> None:
        return None

    _, status = await call(returns_none, executor)
    assert status == GRPCStatus(StatusCode.INTERNAL, "Failed to serialize response!")


async def test_response_over_max_payload_is_resource_exhausted(
    executor: ThreadPoolExecutor,
) -> None:
    endpoint = GRPCEndpoint(target_with(echo), executor=executor, max_payload=100)
    reply = await endpoint(request(b"x" * 100))
    assert reply.data == b""
    assert grpcwire.decode_reply(reply.headers).code == StatusCode.RESOURCE_EXHAUSTED


async def test_metadata_status_and_details_reach_the_reply(executor: ThreadPoolExecutor) -> None:
    seen: list[Any] = []

    async def servicer(req: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.extend([context.invocation_metadata(), context.peer(), context.time_remaining()])
        await context.send_initial_metadata((("i", "1"), ("i-bin", b"\x00")))
        context.set_trailing_metadata((("t", "x"), ("t", "y")))
        context.set_code(grpc.StatusCode.NOT_FOUND)
        context.set_details("no such thing")
        return b"dropped"

    msg = request(
        b"",
        {
            wire.GRPC_METADATA: "a=1,a=2,b-bin=AAE",
            wire.CLIENT_ADDR: "[::1]:7",
            wire.TIMEOUT_MS: "3000",
            wire.REQUEST_ID: "req-1",
        },
    )
    reply, status = await call(servicer, executor, msg)
    # The call's ID is added as x-request-id metadata (the client sent none).
    assert seen[0] == (("a", "1"), ("a", "2"), ("b-bin", b"\x00\x01"), ("x-request-id", "req-1"))
    assert seen[1] == "ipv6:%5B::1%5D:7"  # as grpcio writes an IPv6 peer
    assert 2.5 < seen[2] <= 3.0
    assert reply.data == b""
    assert status == GRPCStatus(
        StatusCode.NOT_FOUND,
        "no such thing",
        md(("i", "1"), ("i-bin", b"\x00")),
        md(("t", "x"), ("t", "y")),
    )


@pytest.mark.parametrize("sync", [True, False])
async def test_swallowed_abort_still_aborts(executor: ThreadPoolExecutor, sync: bool) -> None:
    def sync_servicer(req: bytes, context: grpc.ServicerContext) -> bytes:
        with contextlib.suppress(Exception):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        return b"sneaky"

    async def async_servicer(req: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        with contextlib.suppress(grpc.aio.AbortError):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        return b"sneaky"

    reply, status = await call(sync_servicer if sync else async_servicer, executor)
    assert status == GRPCStatus(StatusCode.PERMISSION_DENIED, "no")
    assert reply.data == b""


@pytest.mark.parametrize("sync", [True, False])
async def test_exception_after_set_code_keeps_the_code(
    executor: ThreadPoolExecutor, sync: bool
) -> None:
    # What generated servicer base classes do for unimplemented methods.
    def sync_servicer(req: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details("Method not implemented!")
        raise NotImplementedError("Method not implemented!")

    async def async_servicer(req: bytes, context: Any) -> bytes:
        return sync_servicer(req, context)

    _, status = await call(sync_servicer if sync else async_servicer, executor)
    assert status == GRPCStatus(StatusCode.UNIMPLEMENTED, "Method not implemented!")


@pytest.mark.parametrize("sync", [True, False])
async def test_exception_is_unknown_and_generic(executor: ThreadPoolExecutor, sync: bool) -> None:
    def sync_servicer(req: bytes, context: Any) -> bytes:
        raise ValueError("internal detail")

    async def async_servicer(req: bytes, context: Any) -> bytes:
        raise ValueError("internal detail")

    reply, status = await call(sync_servicer if sync else async_servicer, executor)
    assert status == GRPCStatus(StatusCode.UNKNOWN, "Exception calling application")
    assert "internal detail" not in repr(reply)


async def test_abort_with_ok_becomes_unknown(executor: ThreadPoolExecutor) -> None:
    async def servicer(req: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.OK, "fine?")

    _, status = await call(servicer, executor)
    assert status.code == StatusCode.UNKNOWN


async def test_abort_with_status_sets_trailing_metadata(executor: ThreadPoolExecutor) -> None:
    class Status(grpc.Status):
        code = grpc.StatusCode.ABORTED
        details = "conflict"
        trailing_metadata = (("why", "race"),)

    def servicer(req: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort_with_status(Status())

    _, status = await call(servicer, executor)
    assert status == GRPCStatus(StatusCode.ABORTED, "conflict", (), md(("why", "race")))


@pytest.mark.parametrize("sync", [True, False])
async def test_deadline_ends_the_call(executor: ThreadPoolExecutor, sync: bool) -> None:
    observed: list[bool] = []

    def sync_servicer(req: bytes, context: grpc.ServicerContext) -> bytes:
        while context.is_active():
            time.sleep(0.01)
        observed.append(context.is_active())
        return b"late"

    async def async_servicer(req: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await asyncio.sleep(5)
        return b"late"

    started = time.monotonic()
    _, status = await call(
        sync_servicer if sync else async_servicer, executor, request(extra={wire.TIMEOUT_MS: "100"})
    )
    assert status == GRPCStatus(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert time.monotonic() - started < 2
    if sync:
        await asyncio.sleep(0.1)
        assert observed == [False]


async def test_call_without_deadline_gets_the_default_one(executor: ThreadPoolExecutor) -> None:
    """A Go gateway sends only the method: the consumer's default deadline bounds the call."""
    remaining: list[float | None] = []

    async def servicer(req: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        remaining.append(context.time_remaining())
        await asyncio.sleep(5)
        return b"late"

    started = time.monotonic()
    endpoint = GRPCEndpoint(target_with(servicer), executor=executor, default_deadline=0.2)
    reply = await endpoint(request(b"in"))  # X-Original-Grpc-Method only
    assert grpcwire.decode_reply(reply.headers) == GRPCStatus(
        StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
    )
    assert time.monotonic() - started < 2
    assert remaining[0] is not None
    assert 0 < remaining[0] <= 0.2
    # Without a default, such a call is unbounded (what the servicer sees: no deadline).
    seen: list[float | None] = []

    async def unbounded(req: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.append(context.time_remaining())
        return req

    endpoint = GRPCEndpoint(target_with(unbounded), executor=executor)
    await endpoint(request(b"in"))
    assert seen == [None]


async def test_callbacks_run_when_the_call_ends(executor: ThreadPoolExecutor) -> None:
    events: list[str] = []

    def sync_servicer(req: bytes, context: grpc.ServicerContext) -> bytes:
        assert context.add_callback(lambda: events.append("sync"))
        return b""

    async def async_servicer(req: bytes, context: Any) -> bytes:
        context.add_done_callback(lambda ctx: events.append(f"async {ctx.done()}"))
        assert not context.done()
        return b""

    await call(sync_servicer, executor)
    await call(async_servicer, executor)
    assert events == ["sync", "async True"]


async def test_sync_cancel_ends_as_cancelled(executor: ThreadPoolExecutor) -> None:
    def servicer(req: bytes, context: Any) -> bytes:
        context.cancel()
        return b"x"

    _, status = await call(servicer, executor)
    assert status.code == StatusCode.CANCELLED


# -- the contexts ---------------------------------------------------------------------


def test_contexts_are_grpc_servicer_contexts() -> None:
    req = GRPCRequest(method="/t.Svc/M")
    sync, aio = SyncContext(req), AsyncContext(req)
    assert isinstance(sync, grpc.ServicerContext)
    assert isinstance(aio, grpc.aio.ServicerContext)
    for context in (sync, aio):
        assert context.time_remaining() is None
        assert context.is_active()
        assert context.peer() == "unknown"
        assert context.auth_context() == {}
        assert context.peer_identities() is None
        assert context.code() is None
        assert context.details() is None


def test_initial_metadata_only_once_and_keys_validated() -> None:
    context = SyncContext(GRPCRequest(method="/t.Svc/M"))
    context.send_initial_metadata((("Key", "v"),))
    with pytest.raises(ValueError, match="no longer allowed"):
        context.send_initial_metadata((("k", "v"),))
    with pytest.raises(ValueError, match="invalid gRPC metadata key"):
        context.set_trailing_metadata((("bad key", "v"),))
    assert context.status().initial_metadata == (("key", "v"),)


async def test_async_context_has_no_streaming_io() -> None:
    context = AsyncContext(GRPCRequest(method="/t.Svc/M"))
    with pytest.raises(RuntimeError):
        await context.read()
    with pytest.raises(RuntimeError):
        await context.write(b"x")


# -- registration ---------------------------------------------------------------------


def test_target_prefers_registered_handlers_then_asks_generic_ones() -> None:
    registered = grpc.unary_unary_rpc_method_handler(echo)
    generic = grpc.unary_unary_rpc_method_handler(echo)
    target = GRPCTarget()
    assert target.empty
    target.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("a.A", {"M": generic, "N": generic}),)
    )
    target.add_registered_method_handlers("a.A", {"M": registered})
    assert target.find("/a.A/M") is registered
    assert target.find("/a.A/N") is generic
    assert target.find("/a.A/O") is None
    assert target.services == ("a.A",)
    with pytest.raises(TypeError):
        target.add_generic_rpc_handlers((object(),))  # type: ignore[arg-type]


def test_generated_code_registers_on_a_consumer() -> None:
    from examples.grpc_hello import hello_pb2_grpc

    consumer = GRPCConsumer(service="greeter")
    hello_pb2_grpc.add_GreeterServicer_to_server(Greeter(), consumer)
    assert consumer.target.services == ("hello.v1.Greeter",)
    assert GRPCConsumer(register_greeter, service="greeter").target.find(
        "/hello.v1.Greeter/SayHello"
    )


def test_register_must_register_something() -> None:
    with pytest.raises(ConfigError, match="registered no gRPC service"):
        GRPCConsumer(lambda target: None, service="x")
    with pytest.raises(ConfigError, match="not callable"):
        GRPCConsumer(cast(Any, "nope"), service="x")
    with pytest.raises(ConfigError):
        GRPCConsumer(register_greeter, service="bad.name")


def test_former_spellings_of_the_public_names_still_work() -> None:
    import narun.consumer
    import narun.consumer.grpc

    assert narun.consumer.GRPCConsumer is GRPCConsumer
    assert narun.consumer.GRPCTarget is GRPCTarget
    assert narun.consumer.grpc.GRPCConsumer is GRPCConsumer
    assert narun.consumer.grpc.GRPCTarget is GRPCTarget
