"""OpenTelemetry tracing of requests across the NATS hop, through the OTel API only.

narun depends on ``opentelemetry-api``, never on the SDK: a program that configures a
``TracerProvider`` (``opentelemetry-instrument``, or ``trace.set_tracer_provider`` before
serving) gets spans; one that does not pays almost nothing. The gateway opens a SERVER
span per request and a PRODUCER span for its NATS request, whose context travels in the
NATS headers ``traceparent``/``tracestate`` (the globally configured propagator, W3C
Trace Context by default). The consumer opens a CONSUMER span, child of that one, and
makes it current while the app runs, so that the app's own spans nest below it.

:class:`LazyTracer` decides per request whether tracing is on: as long as the global
provider is the API's no-op proxy it answers ``None`` (rechecking at most once a second),
so when tracing is off a request costs one attribute check and a clock read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

__all__ = [
    "LazyTracer",
    "app_trace_headers",
    "end_span",
    "extract_headers",
    "extract_metadata",
    "extract_nats",
    "finish",
    "process",
    "propagation_fields",
    "sending",
    "use_provider",
]

_RECHECK_SECONDS = 1.0
_override: TracerProvider | None = None
_generation = 0


def use_provider(provider: TracerProvider | None) -> None:
    """Trace narun with ``provider`` instead of the global one (``None``: the global one).

    For tests, and for tracing narun apart from the application. Takes effect on the
    next request.
    """
    global _override, _generation
    _override = provider
    _generation += 1


class LazyTracer:
    """A tracer named ``name``, or ``None`` while no SDK provider is configured."""

    __slots__ = ("_generation", "_name", "_next_check", "_tracer")

    def __init__(self, name: str) -> None:
        self._name = name
        self._tracer: Tracer | None = None
        self._generation = -1
        self._next_check = 0.0

    def get(self) -> Tracer | None:
        """The tracer to use for this request; ``None`` when tracing is off."""
        if self._generation == _generation:
            if self._tracer is not None:
                return self._tracer
            if time.monotonic() < self._next_check:
                return None
        return self._resolve()

    def _resolve(self) -> Tracer | None:
        self._generation = _generation
        provider = _override if _override is not None else trace.get_tracer_provider()
        if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
            # No SDK (yet): a provider set later is seen within a second. Once a real
            # one is set it stays (the API allows setting the global provider once).
            self._tracer = None
            self._next_check = time.monotonic() + _RECHECK_SECONDS
            return None
        self._tracer = provider.get_tracer(self._name)
        return self._tracer


# --- carriers ------------------------------------------------------------------------


class _HeaderPairs(Getter[Sequence[tuple[bytes, bytes]]]):
    """ASGI header lists (lower-case byte names)."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.encode("latin-1")
        values = [v.decode("latin-1") for n, v in carrier if n == name]
        return values or None

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [n.decode("latin-1") for n, _ in carrier]


class _MetadataPairs(Getter[Sequence[tuple[str, str | bytes]]]):
    """gRPC metadata (lower-case keys; ``-bin`` values are bytes and never match)."""

    def get(self, carrier: Sequence[tuple[str, str | bytes]], key: str) -> list[str] | None:
        values = [v for k, v in carrier if k == key and isinstance(v, str)]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, str | bytes]]) -> list[str]:
        return [k for k, _ in carrier]


class _NATSHeaders(Getter[Mapping[str, str]]):
    """NATS header maps, names matched without regard to case."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            for name, item in carrier.items():
                if name.lower() == key:
                    return [item]
            return None
        return [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_HEADERS = _HeaderPairs()
_METADATA = _MetadataPairs()
_NATS = _NATSHeaders()


def extract_headers(headers: Sequence[tuple[bytes, bytes]]) -> otel_context.Context:
    """The trace context a client sent in HTTP fields (``traceparent``, ``tracestate``)."""
    return propagate.extract(headers, getter=_HEADERS)


def extract_metadata(metadata: Sequence[tuple[str, str | bytes]]) -> otel_context.Context:
    """The trace context a client sent in gRPC metadata."""
    return propagate.extract(metadata, getter=_METADATA)


def extract_nats(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context a gateway sent in NATS headers."""
    return propagate.extract(headers or {}, getter=_NATS)


# --- spans ---------------------------------------------------------------------------


def end_span(span: Span, attributes: Mapping[str, Any], *, error: bool) -> None:
    """Set the final ``attributes`` (and ERROR status if ``error``), then end ``span``."""
    span.set_attributes(attributes)
    if error:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


def sending(
    tracer: LazyTracer,
    parent: Span | None,
    subject: str,
    headers: dict[str, str],
    size: int,
) -> AbstractContextManager[object]:
    """Around a gateway's NATS request: a PRODUCER span, injected into ``headers``.

    Does nothing when ``parent`` (the request's span) is ``None``: tracing is off.
    """
    if parent is None:
        return _NOTHING
    otel_tracer = tracer.get()
    if otel_tracer is None:
        return _NOTHING
    return _sending(otel_tracer, parent, subject, headers, size)


@contextlib.contextmanager
def _sending(
    tracer: Tracer, parent: Span, subject: str, headers: dict[str, str], size: int
) -> Iterator[Span]:
    span = tracer.start_span(
        f"send {subject}",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.message.body.size": size,
        },
    )
    # The parent's context carries the client's baggage and tracestate along.
    propagate.inject(headers, context=trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


def process(
    tracer: Tracer,
    headers: Mapping[str, str] | None,
    subject: str,
    size: int,
    attributes: Mapping[str, Any],
) -> tuple[Span, Token[otel_context.Context]]:
    """Start a consumer's CONSUMER span, child of the context in the NATS ``headers``.

    The span is made current; return it with the token to :func:`finish` it with.
    """
    parent = extract_nats(headers)
    span = tracer.start_span(
        f"process {subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": "q",
            "messaging.message.body.size": size,
            **attributes,
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return span, token


def finish(
    span: Span, token: Token[otel_context.Context], attributes: Mapping[str, Any], *, error: bool
) -> None:
    """Undo :func:`process`'s current span and end the span."""
    otel_context.detach(token)
    end_span(span, attributes, error=error)


def app_trace_headers() -> list[tuple[str, str]]:
    """The current context as propagation fields (``traceparent``...), for the app to see."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def propagation_fields() -> Iterable[str]:
    """Names of the fields the configured propagator reads and writes."""
    return propagate.get_global_textmap().fields
