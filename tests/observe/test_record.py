"""narun.observe.record without the network: what one request's record writes, once."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from narun.observe import requestid, tracing
from narun.observe.log import ACCESS_LOGGER
from narun.observe.metrics import ConsumerMetrics, GatewayMetrics
from narun.observe.record import (
    ConsumerGrpcRecord,
    ConsumerHttpRecord,
    GatewayGrpcRecord,
    GatewayHttpRecord,
)
from narun.protocol import wire
from narun.protocol.bhttp import Request
from narun.protocol.grpcwire import StatusCode
from tests.support.spans import recorded_spans

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as spans:
        yield spans


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        yield caplog


def fresh(func: Any, *args: Any) -> Any:
    """Run ``func`` in a context of its own, as each request's task does."""
    return contextvars.copy_context().run(func, *args)


def http_scope(rid: bytes | None = None) -> dict[str, Any]:
    headers = [(b"host", b"example.test"), (b"traceparent", TRACEPARENT.encode())]
    if rid is not None:
        headers.append((b"x-request-id", rid))
    return {
        "type": "http",
        "method": "POST",
        "path": "/echo/x",
        "scheme": "http",
        "headers": headers,
        "client": ("::1", 4000),
    }


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_gateway_http_record_writes_metrics_span_and_line_once(
    exporter: InMemorySpanExporter, access: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()
    lazy = tracing.LazyTracer("narun.test")
    record = GatewayHttpRecord(http_scope(b"client-id-1"), metrics, lazy)
    assert record.request_id == "client-id-1"
    assert requestid.current.get() == "client-id-1"
    record.pattern, record.service = "/echo/", "echo"
    record.count(metrics.in_flight_http)
    assert metrics.registry.get_sample_value(
        "narun_gateway_in_flight_requests", {"protocol": "http"}
    ) == pytest.approx(1.0)
    record.status = 502
    record.end()
    record.end()  # a second end changes nothing

    assert requestid.current.get() is None  # the gateway's HTTP side resets the ID
    labels = {"method": "POST", "path": "/echo/", "status_code": "502"}
    assert metrics.registry.get_sample_value("http_gateway_requests_total", labels) == 1.0
    assert metrics.registry.get_sample_value(
        "narun_gateway_in_flight_requests", {"protocol": "http"}
    ) == pytest.approx(0.0)
    span = only_span(exporter)
    assert span.name == "POST /echo/"
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/echo/"
    assert span.attributes["http.response.status_code"] == 502
    assert span.attributes["client.address"] == "::1"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert format(span.context.trace_id if span.context else 0, "032x") == TRACEPARENT[3:35]
    (line,) = access.records
    assert line.getMessage().startswith("POST /echo/ -> echo 502 ")
    assert line.getMessage().endswith("ms client=[::1]:4000")
    fields = line.__dict__["narun"]
    assert fields["route"] == "/echo/"
    assert fields["client"] == "[::1]:4000"
    assert "bytes_in" not in fields


def test_unrouted_request_without_tracer_has_no_span_and_a_fresh_id(
    exporter: InMemorySpanExporter, access: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()
    record = GatewayHttpRecord(http_scope(b" bad id"), metrics, None)
    assert record.span is None
    assert len(record.request_id) == 16  # the malformed one is replaced
    record.status = 431
    record.end()
    assert exporter.get_finished_spans() == ()
    labels = {"method": "POST", "path": "<unmatched>", "status_code": "431"}
    assert metrics.registry.get_sample_value("http_gateway_requests_total", labels) == 1.0
    assert access.records[0].getMessage().startswith("POST <unmatched> -> - 431 ")


def test_a_stream_line_carries_the_byte_counts(access: pytest.LogCaptureFixture) -> None:
    record = GatewayHttpRecord(http_scope(), None, None)
    record.stream = True
    record.status = 200
    for piece in (b"data: 1\n\n", b"data: 2\n\n"):
        record.bytes_out += len(piece)
    record.bytes_in += 5
    record.end()
    record.bytes_out += 100  # after the end: not written again
    record.end()
    (line,) = access.records
    assert line.getMessage().endswith(" in=5 out=18")
    assert line.__dict__["narun"]["bytes_out"] == 18


def test_gateway_grpc_record(
    exporter: InMemorySpanExporter, access: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()
    metadata = (("x-request-id", "call-7"), ("traceparent", TRACEPARENT))

    def call() -> GatewayGrpcRecord:
        record = GatewayGrpcRecord(
            "/hello.v1.Greeter/SayHello",
            "greeter",
            metadata,
            lambda: "ipv4:127.0.0.1:5555",
            metrics,
            tracing.LazyTracer("narun.test"),
        )
        assert requestid.current.get() == "call-7"
        assert metrics.registry.get_sample_value(
            "narun_gateway_in_flight_requests", {"protocol": "grpc"}
        ) == pytest.approx(1.0)
        record.status = StatusCode.NOT_FOUND
        record.end()
        return record

    record = fresh(call)
    assert record.request_id == "call-7"
    labels = {"grpc_method": "/hello.v1.Greeter/SayHello", "grpc_code": "NOT_FOUND"}
    assert metrics.registry.get_sample_value("grpc_gateway_requests_total", labels) == 1.0
    assert metrics.registry.get_sample_value(
        "narun_gateway_in_flight_requests", {"protocol": "grpc"}
    ) == pytest.approx(0.0)
    span = only_span(exporter)
    assert span.name == "hello.v1.Greeter/SayHello"
    assert span.attributes is not None
    assert span.attributes["rpc.service"] == "hello.v1.Greeter"
    assert span.attributes["rpc.grpc.status_code"] == 5
    assert span.status.status_code is trace.StatusCode.ERROR
    (line,) = access.records
    assert line.getMessage().startswith("gRPC /hello.v1.Greeter/SayHello -> greeter NOT_FOUND ")
    assert line.getMessage().endswith("ms client=127.0.0.1:5555")


def test_unrouted_grpc_call_is_one_unmatched_series() -> None:
    metrics = GatewayMetrics()

    def call() -> None:
        record = GatewayGrpcRecord(
            "/x.Y/Z", None, (), lambda: "unix:/s", metrics, tracing.LazyTracer("t")
        )
        record.status = StatusCode.UNIMPLEMENTED
        record.end()

    fresh(call)
    labels = {"grpc_method": "<unmatched>", "grpc_code": "UNIMPLEMENTED"}
    assert metrics.registry.get_sample_value("grpc_gateway_requests_total", labels) == 1.0


def test_consumer_http_record_makes_its_span_current_until_the_end(
    exporter: InMemorySpanExporter, access: pytest.LogCaptureFixture
) -> None:
    metrics = ConsumerMetrics()
    recorder = metrics.recorder("echo", "default")
    headers = {wire.REQUEST_ID: "from-gateway", "traceparent": TRACEPARENT}

    def request() -> None:
        record = ConsumerHttpRecord(headers, "echo", 42, recorder, tracing.LazyTracer("t"))
        assert record.span is not None
        assert trace.get_current_span() is record.span
        assert requestid.current.get() == "from-gateway"
        record.request = Request(method="GET", scheme="http", authority="a", path="/a/b?secret=1")
        record.status = 200
        record.end()
        assert trace.get_current_span() is not record.span

    fresh(request)
    labels = {"app": "echo", "stream": "default", "status": "200"}
    assert metrics.registry.get_sample_value("narun_request_processing_seconds_count", labels) == 1
    assert metrics.registry.get_sample_value(
        "narun_worker_active_count", {"app": "echo", "stream": "default"}
    ) == pytest.approx(0.0)
    span = only_span(exporter)
    assert span.kind is SpanKind.CONSUMER
    assert span.attributes is not None
    assert span.attributes["url.path"] == "/a/b"
    assert span.attributes["messaging.message.body.size"] == 42
    (line,) = access.records
    assert line.getMessage().startswith("GET /a/b 200 ")
    assert "secret" not in line.getMessage()


def test_consumer_record_of_an_undecodable_request(access: pytest.LogCaptureFixture) -> None:
    def request() -> str:
        record = ConsumerHttpRecord({}, "echo", 3, None, tracing.LazyTracer("t"))
        record.status = 400
        record.end()
        return record.request_id

    assert len(fresh(request)) == 16
    assert access.records[0].getMessage().startswith("- - 400 ")


def test_consumer_grpc_record(
    exporter: InMemorySpanExporter, access: pytest.LogCaptureFixture
) -> None:
    metrics = ConsumerMetrics()
    recorder = metrics.recorder("greeter", "grpc")
    headers = {wire.GRPC_METHOD: "/hello.v1.Greeter/SayHello"}

    def call() -> None:
        record = ConsumerGrpcRecord(headers, "greeter", 7, recorder, tracing.LazyTracer("t"))
        assert record.status is StatusCode.INTERNAL  # until the handler says otherwise
        record.status = StatusCode.OK
        record.end()

    fresh(call)
    labels = {"app": "greeter", "stream": "grpc", "status": "OK"}
    assert metrics.registry.get_sample_value("narun_request_processing_seconds_count", labels) == 1
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes["rpc.method"] == "SayHello"
    assert span.status.status_code is not trace.StatusCode.ERROR
    assert access.records[0].getMessage().startswith("gRPC /hello.v1.Greeter/SayHello OK ")
