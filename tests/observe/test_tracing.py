"""narun.observe.tracing without the network: when tracing is on, carriers, span helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from narun.observe import tracing
from tests.support.spans import recorded_spans

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as spans:
        yield spans


def test_tracing_is_off_without_an_sdk_provider() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert tracing.LazyTracer("narun.test").get() is None


def test_a_provider_turns_tracing_on_and_off(exporter: InMemorySpanExporter) -> None:
    lazy = tracing.LazyTracer("narun.test")
    assert lazy.get() is not None
    tracing.use_provider(None)
    assert lazy.get() is None


@pytest.mark.parametrize(
    ("extract", "carrier"),
    [
        (tracing.extract_headers, [(b"host", b"h"), (b"traceparent", TRACEPARENT.encode())]),
        (tracing.extract_metadata, [("traceparent", TRACEPARENT), ("x-bin", b"\x00")]),
        (tracing.extract_nats, {"Traceparent": TRACEPARENT}),
    ],
)
def test_carriers_yield_the_client_context(extract: object, carrier: object) -> None:
    context = extract(carrier)  # type: ignore[operator]
    span_context = trace.get_current_span(context).get_span_context()
    assert format(span_context.trace_id, "032x") == CLIENT_TRACE
    assert format(span_context.span_id, "016x") == CLIENT_SPAN


def test_send_and_process_spans_link_across_headers(exporter: InMemorySpanExporter) -> None:
    lazy = tracing.LazyTracer("narun.test")
    tracer = lazy.get()
    assert tracer is not None
    parent = tracer.start_span("POST /x/", context=tracing.extract_headers([]))
    headers: dict[str, str] = {}
    with tracing.sending(lazy, parent, "svc", headers, 12):
        pass
    parent.end()
    assert "traceparent" in headers
    span, token = tracing.process(tracer, headers, "svc", 12, {"url.path": "/x/"})
    fields = dict(tracing.app_trace_headers())
    tracing.finish(span, token, {"http.response.status_code": 200}, error=False)
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again
    send, server = (s for s in exporter.get_finished_spans() if s.name != "process svc")
    (process,) = (s for s in exporter.get_finished_spans() if s.name == "process svc")
    assert (server.kind, send.kind, process.kind) == (
        SpanKind.INTERNAL,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    )
    assert send.parent is not None
    assert send.parent.span_id == server.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.attributes is not None
    assert process.attributes["url.path"] == "/x/"
    assert fields["traceparent"].split("-")[2] == format(process.context.span_id, "016x")


def test_a_failed_send_marks_the_span(exporter: InMemorySpanExporter) -> None:
    lazy = tracing.LazyTracer("narun.test")
    tracer = lazy.get()
    assert tracer is not None
    parent = tracer.start_span("GET /y")
    with pytest.raises(TimeoutError), tracing.sending(lazy, parent, "svc", {}, 0):
        raise TimeoutError
    (send,) = exporter.get_finished_spans()
    assert not send.status.is_ok
    assert send.events[0].name == "exception"


def test_sending_without_a_parent_does_nothing(exporter: InMemorySpanExporter) -> None:
    headers: dict[str, str] = {}
    with tracing.sending(tracing.LazyTracer("narun.test"), None, "svc", headers, 0):
        pass
    assert headers == {}
    assert exporter.get_finished_spans() == ()
