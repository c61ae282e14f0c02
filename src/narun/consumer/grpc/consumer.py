"""Serve grpcio servicers as a NATS Micro service (endpoint ``grpc_handler``).

Register servicers exactly as on a ``grpc.Server``: the generated
``add_XServicer_to_server(servicer, target)`` functions accept a :class:`GRPCTarget`
(or a :class:`GRPCConsumer`, which is one). Each NATS request names its method in
``X-Original-Grpc-Method`` and carries the raw request message; the reply carries the
raw response message and the call's status and metadata (``narun.protocol.grpcwire``).

``async def`` servicer methods run on the event loop with an
:class:`~narun.consumer.grpc.context.AsyncContext`; plain ones run on a thread pool with
a :class:`~narun.consumer.grpc.context.SyncContext`. Streaming methods (client, server,
bidirectional) are served over a stream (:mod:`narun.consumer.grpc.streaming`) when the
gateway reads streams (``Narun-Stream``); otherwise they answer UNIMPLEMENTED. A unary
method's answer to a request that offered a stream says ``Narun-Grpc-Unary``, so that the
gateway takes its later calls on its unary path.

>>> async with GRPCConsumer(register, service="greeter") as consumer:  # doctest: +SKIP
...     await consumer.serve_forever()
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, Unpack

import grpc
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.consumer.grpc import streaming
from narun.consumer.grpc.context import AsyncContext, CallContext, SyncContext
from narun.consumer.host import HostOptions, ServiceHost, serve
from narun.consumer.service import Handler, Reply
from narun.errors import ConfigError
from narun.observe import requestid, tracing
from narun.observe.metrics import RequestRecorder
from narun.observe.record import ConsumerGrpcRecord
from narun.protocol import grpcwire, wire
from narun.protocol.grpcwire import (
    GRPCRequest,
    GRPCStatus,
    GRPCWireError,
    Metadata,
    Metadatum,
    StatusCode,
)
from narun.protocol.stream import DEFAULT_IDLE_MS, StreamError
from narun.transport.stream import StreamHub

if TYPE_CHECKING:
    pass

__all__ = ["GRPCConsumer", "GRPCEndpoint", "GRPCTarget", "Register", "run", "serve"]

logger = logging.getLogger(__name__)
_RID = requestid.HEADER.decode()

Register = Callable[["GRPCTarget"], None]
"""A function that registers servicers: ``def register(target): add_XServicer_to_server(...)``."""

_MethodHandler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_GenericHandler: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"


@dataclass(frozen=True, slots=True)
class _CallDetails(grpc.HandlerCallDetails):
    """What a ``GenericRpcHandler.service`` gets: method name and metadata."""

    method: str
    invocation_metadata: Metadata


class GRPCTarget:
    """The object ``add_XServicer_to_server`` functions register servicers on.

    It keeps what grpcio's server keeps: method handlers registered by name, and generic
    handlers asked in order for any other method.
    """

    def __init__(self) -> None:
        self._methods: dict[str, _MethodHandler] = {}
        self._generic: list[_GenericHandler] = []
        self._services: set[str] = set()

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[_GenericHandler]) -> None:
        """Add handlers whose ``service(details)`` returns a method handler or ``None``."""
        for handler in generic_rpc_handlers:
            if not callable(getattr(handler, "service", None)):
                raise TypeError(f"{handler!r} is not a grpc.GenericRpcHandler")
            self._generic.append(handler)
            service_name = getattr(handler, "service_name", None)
            if callable(service_name):
                self._services.add(str(service_name()))

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, _MethodHandler]
    ) -> None:
        """Add the method handlers of service ``service_name``, by method name."""
        for name, handler in method_handlers.items():
            self._methods[f"/{service_name}/{name}"] = handler
        self._services.add(service_name)

    @property
    def services(self) -> tuple[str, ...]:
        """Names of the gRPC services registered so far (those that say their name)."""
        return tuple(sorted(self._services))

    @property
    def empty(self) -> bool:
        """True while nothing is registered."""
        return not self._methods and not self._generic

    def find(self, method: str, metadata: Metadata = ()) -> _MethodHandler | None:
        """The handler of ``/pkg.Service/Method``, or ``None`` if no one serves it."""
        handler = self._methods.get(method)
        if handler is not None:
            return handler
        details = _CallDetails(method, metadata)
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None


def _is_async(behavior: Callable[..., Any]) -> bool:
    """Whether ``behavior`` is ``async`` (a coroutine or async generator function)."""
    try:
        return _is_async_kept(behavior)
    except TypeError:  # not hashable
        return _async_kind(behavior)


def _async_kind(behavior: Callable[..., Any]) -> bool:
    call = behavior if inspect.isroutine(behavior) else getattr(behavior, "__call__", None)  # noqa: B004
    return any(
        check(f)
        for f in (behavior, call)
        for check in (inspect.iscoroutinefunction, inspect.isasyncgenfunction)
    )


# A servicer's methods are the same objects on every call: their kind is looked up once.
_is_async_kept = functools.lru_cache(maxsize=1024)(_async_kind)


def _status_reply(code: StatusCode, message: str) -> Reply:
    status = GRPCStatus(code=code, message=message)
    return Reply(headers=grpcwire.encode_reply(status), error=f"gRPC {grpcwire.code_name(code)}")


# A full instance refuses with UNAVAILABLE, marked retryable for the gateway.
_OVERLOADED = Reply(
    headers={
        **grpcwire.encode_reply(
            GRPCStatus(code=StatusCode.UNAVAILABLE, message="Service overloaded")
        ),
        wire.OVERLOADED: "1",
    },
    error="Service overloaded",
)


def _metadata(metadata: Metadata, rid: str, traced: bool) -> Metadata:
    """The servicer's view: ``x-request-id`` added if absent; our trace context if traced."""
    if not any(key == _RID for key, _ in metadata):
        metadata = (*metadata, Metadatum(_RID, rid))
    if traced:
        drop = set(tracing.propagation_fields())
        fields = tracing.app_trace_headers()
        metadata = (
            *(m for m in metadata if m.key not in drop),
            *(Metadatum(key.lower(), value) for key, value in fields),
        )
    return metadata


def _headers_size(headers: Mapping[str, str]) -> int:
    # "NATS/1.0\r\n" + "Name: value\r\n"... + "\r\n", as nats-py writes it.
    return 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())


class GRPCEndpoint:
    """Handler of the ``grpc_handler`` endpoint: one unary gRPC call per NATS message.

    Per call it also sets the request ID (``Narun-Request-Id``, or a new one; the
    servicer sees it as ``x-request-id`` metadata), opens the consumer's trace span when
    tracing is on, records ``metrics`` (if given) and writes the access log line.
    """

    def __init__(
        self,
        target: GRPCTarget,
        *,
        executor: Executor,
        max_payload: int = 1024 * 1024,
        metrics: RequestRecorder | None = None,
        default_deadline: float | None = None,
        hub: StreamHub | None = None,
    ) -> None:
        self.target = target
        self.hub = hub
        """Stream inboxes; None: streaming methods answer UNIMPLEMENTED."""
        self.executor = executor
        self.max_payload = max_payload
        self.metrics = metrics
        self.default_deadline = default_deadline or None
        """Seconds a call without ``Narun-Timeout-Ms`` (a Go gateway's) may run."""
        self._tracer = tracing.LazyTracer("narun.consumer")

    async def __call__(self, msg: Msg) -> Reply:
        """Decode, call the servicer, encode. Never raises for bad input."""
        # Each call runs in a task of its own (MicroService): the ID stays set for the
        # last log lines about it, and goes with the task.
        record = ConsumerGrpcRecord(
            msg.headers or {}, msg.subject, len(msg.data), self.metrics, self._tracer
        )
        try:
            reply = await self._serve(msg, record.request_id, record.span is not None)
            status = StatusCode.parse((reply.headers or {}).get(wire.GRPC_STATUS, ""))
            record.status = StatusCode.UNKNOWN if status is None else status
            return reply
        finally:
            record.end()

    async def _serve(self, msg: Msg, rid: str, traced: bool) -> Reply:
        started = time.monotonic()
        try:
            request = grpcwire.decode_request(msg.headers)
        except GRPCWireError as exc:
            logger.warning("malformed gRPC request headers on %s: %s", msg.subject, exc)
            return _status_reply(StatusCode.INVALID_ARGUMENT, "Malformed gRPC request metadata")
        method = request.method
        if method is None:
            return _status_reply(
                StatusCode.INVALID_ARGUMENT, f"Missing required {wire.GRPC_METHOD} header"
            )
        request = dataclasses.replace(
            request,
            metadata=_metadata(request.metadata, rid, traced),
            timeout=request.timeout if request.timeout is not None else self.default_deadline,
        )
        try:
            return await self._call(request, method, msg, started)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("gRPC call %s failed inside narun", method)
            return _status_reply(StatusCode.INTERNAL, "Internal error")

    async def _call(self, request: GRPCRequest, method: str, msg: Msg, started: float) -> Reply:
        handler = self.target.find(method, request.metadata)
        if handler is None:
            logger.info("gRPC method %s is not served here", method)
            return _status_reply(StatusCode.UNIMPLEMENTED, "Method not found!")
        behavior: Callable[[Any, Any], Any] | None = handler.unary_unary
        if handler.request_streaming or handler.response_streaming or behavior is None:
            return await self._stream(handler, request, method, msg, started)
        if (msg.headers or {}).get(wire.GRPC_NO_MESSAGE) == "1":
            return _status_reply(
                StatusCode.UNIMPLEMENTED, "exactly one request message is required by this method"
            )
        data = msg.data
        try:
            argument = (
                data if handler.request_deserializer is None else handler.request_deserializer(data)
            )
        except Exception:
            logger.exception("%s: cannot deserialize the request", method)
            return _status_reply(StatusCode.INTERNAL, "Exception deserializing request!")

        context: CallContext
        if _is_async(behavior):
            context = AsyncContext(request, started=started)
            status, response = await self._run(method, context, behavior(argument, context))
        else:
            context = SyncContext(request, started=started)
            run = contextvars.copy_context().run
            future = asyncio.get_running_loop().run_in_executor(
                self.executor, run, behavior, argument, context
            )
            status, response = await self._run(method, context, future)
        try:
            reply = self._reply(method, status, response, handler.response_serializer)
        finally:
            context.finish()
        if reply.headers is not None and wire.STREAM in (msg.headers or {}):
            # The gateway offered a stream: tell it that this method needs none.
            reply.headers[wire.GRPC_UNARY] = "1"
        return reply

    async def _stream(
        self, handler: Any, request: GRPCRequest, method: str, msg: Msg, started: float
    ) -> Reply:
        headers = msg.headers or {}
        credit = wire.parse_window(headers.get(wire.STREAM))
        if self.hub is None or credit is None or not msg.reply:
            return _status_reply(
                StatusCode.UNIMPLEMENTED,
                f"{method} is a streaming method; its caller does not read streams",
            )
        idle_ms = wire.parse_window(headers.get(wire.STREAM_IDLE_MS)) or DEFAULT_IDLE_MS
        deadline = wire.parse_timeout(headers.get(wire.GRPC_DEADLINE_MS))
        request = dataclasses.replace(
            request, timeout=deadline if deadline is not None else self.default_deadline
        )
        behavior = streaming.behavior(handler)
        first = None if headers.get(wire.GRPC_NO_MESSAGE) == "1" else msg.data
        channel = streaming.open_channel(self.hub, msg.reply, credit, idle_ms / 1000)
        try:
            status = await streaming.serve(
                channel=channel,
                handler=handler,
                request=request,
                first=first,
                is_async=_is_async(behavior),
                executor=self.executor,
                started=started,
            )
        except StreamError as exc:
            logger.info("%s: stream ended early: %s", method, exc)
            await channel.abort(exc.code, exc.reason)  # if not the gateway's doing
            status = GRPCStatus(StatusCode.CANCELLED, "Cancelled")
        except asyncio.CancelledError:
            if channel.state.abort_error is None:
                raise  # the consumer is stopping
            logger.info("%s: cancelled by the gateway: %s", method, channel.state.abort_error)
            status = GRPCStatus(StatusCode.CANCELLED, "Cancelled")
        finally:
            channel.close()
        error = None if status.code == StatusCode.OK else f"gRPC {grpcwire.code_name(status.code)}"
        return Reply(headers=grpcwire.encode_reply(status), error=error, sent=True)

    async def _run(self, method: str, context: CallContext, call: Any) -> tuple[GRPCStatus, object]:
        budget = context.time_remaining()
        timer = asyncio.timeout(budget)
        try:
            async with timer:
                response = await call
        except Exception as exc:
            if context.aborted:
                return context.status(), None
            if timer.expired():
                logger.info("%s: deadline exceeded", method)
                return GRPCStatus(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), None
            if context.code() not in (None, grpc.StatusCode.OK):
                # As grpcio: an exception after set_code() ends the call with that code.
                logger.info("%s raised %s after setting a status", method, type(exc).__name__)
                return context.status(), None
            logger.exception("%s: exception calling application", method)
            return GRPCStatus(StatusCode.UNKNOWN, "Exception calling application"), None
        return context.status(), response

    def _reply(
        self,
        method: str,
        status: GRPCStatus,
        response: object,
        serializer: Callable[[Any], bytes] | None,
    ) -> Reply:
        data = b""
        if status.code == StatusCode.OK:
            try:
                out = response if serializer is None else serializer(response)
                if not isinstance(out, bytes):
                    raise TypeError(f"serialized response is {type(out).__name__}, not bytes")
                data = out
            except Exception:
                logger.exception("%s: cannot serialize the response", method)
                status = GRPCStatus(StatusCode.INTERNAL, "Failed to serialize response!")
        headers = grpcwire.encode_reply(status)
        if len(data) + _headers_size(headers) > self.max_payload:
            logger.error(
                "%s: reply of %d bytes exceeds the NATS max_payload of %d bytes",
                method,
                len(data),
                self.max_payload,
            )
            data = b""
            status = GRPCStatus(StatusCode.RESOURCE_EXHAUSTED, "Response message too large")
            headers = grpcwire.encode_reply(status)
        error = None if status.code == StatusCode.OK else f"gRPC {grpcwire.code_name(status.code)}"
        return Reply(data=data, headers=headers, error=error)


class GRPCConsumer(ServiceHost):
    """grpcio servicers served as the NATS Micro service ``service``; an async context manager.

    ``register(target)`` (optional) is called at once to register servicers; more can be
    added with :meth:`add_generic_rpc_handlers` / :meth:`add_registered_method_handlers`
    (so ``add_XServicer_to_server(servicer, consumer)`` works too). The options and the
    lifecycle are :class:`~narun.consumer.host.ServiceHost`'s; ``concurrency`` also
    sizes the thread pool of non-async servicers.
    """

    endpoint = wire.GRPC_SERVICE_ENDPOINT
    stream = "grpc"
    connection_name = "narun grpc consumer"
    overload_reply = _OVERLOADED
    service_metadata = {wire.STREAM_METADATA: "1"}

    def __init__(self, register: Register | None = None, **options: Unpack[HostOptions]) -> None:
        super().__init__(**options)
        self.target = GRPCTarget()
        if register is not None:
            if not callable(register):
                raise ConfigError(f"{register!r} is not callable: expected register(target)")
            register(self.target)
            if self.target.empty:
                raise ConfigError(f"{register!r} registered no gRPC service")
        self._executor: ThreadPoolExecutor | None = None
        self._hub: StreamHub | None = None

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[_GenericHandler]) -> None:
        """As ``grpc.Server.add_generic_rpc_handlers``."""
        self.target.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, _MethodHandler]
    ) -> None:
        """As ``grpc.Server.add_registered_method_handlers``."""
        self.target.add_registered_method_handlers(service_name, method_handlers)

    async def _open(self) -> None:
        if self.target.empty:
            logger.warning("no gRPC servicer registered: every call will be UNIMPLEMENTED")
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix=f"narun-grpc-{self.service}"
        )

    def _handler(self, nc: Client, recorder: RequestRecorder | None) -> Handler:
        assert self._executor is not None
        logger.info("serving gRPC services %s", ", ".join(self.target.services) or "(generic)")
        return GRPCEndpoint(
            self.target,
            executor=self._executor,
            max_payload=nc.max_payload,
            metrics=recorder,
            default_deadline=self.default_deadline,
            hub=self._hub,
        )

    async def _connected(self, nc: Client) -> tuple[str, ...]:
        # Streamed calls: one inbox wildcard for every stream of this instance.
        self._hub = StreamHub(nc)
        await self._hub.start()
        return ()

    async def _close(self) -> None:
        if self._hub is not None:
            await self._hub.stop()
        if self._executor is not None:
            # Threads still running past the drain timeout are left to finish on their own.
            self._executor.shutdown(wait=False, cancel_futures=True)


def run(register: Register, **options: Any) -> None:
    """Serve the servicers ``register`` adds until SIGINT/SIGTERM (options of GRPCConsumer)."""
    asyncio.run(serve(GRPCConsumer(register, **options)))
