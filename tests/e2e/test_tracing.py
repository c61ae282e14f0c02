"""One trace across the NATS hop: gateway and consumer in this process, real nats-server.

The gateway (``Gateway(config).http_app`` driven by httpx's ASGI transport; for gRPC its
``grpc.aio`` server on a free port) and a ``Consumer`` of the echo app (a
``GRPCConsumer``) share this test's event loop and talk over two NATS connections to the
session's nats-server. Spans go to the OpenTelemetry SDK's in-memory
exporter, installed with :func:`narun.observe.tracing.use_provider` (not as the global provider).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc.aio
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from narun.config.gateway import parse_config
from narun.consumer import Consumer
from narun.consumer.grpc.consumer import GRPCConsumer
from narun.gateway.server import Gateway
from tests.support import unique_service
from tests.support.apps import asgi_app
from tests.support.grpc_apps import register
from tests.support.spans import recorded_spans

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as spans:
        yield spans


@dataclass
class Client:
    http: httpx.AsyncClient
    service: str

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)


@pytest.fixture
async def client(nats_url: str, exporter: InMemorySpanExporter) -> AsyncIterator[Client]:
    service = unique_service("traced")
    config = parse_config(
        {
            "nats_url": nats_url,
            "metrics_addr": "",
            "request_timeout_seconds": 5,
            "routes": [
                {"path": "/echo/", "methods": ["GET"], "service": service},
                {"path": "/boom", "methods": ["GET"], "service": service},
            ],
        }
    )
    gateway = Gateway(config)
    await gateway.start(metrics_server=False, grpc_server=False)
    try:
        async with Consumer(asgi_app, service=service, nats_url=nats_url):
            transport = httpx.ASGITransport(app=gateway.http_app, client=("127.0.0.1", 4321))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                yield Client(c, service)
    finally:
        await gateway.stop()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> ReadableSpan:
    (span,) = (s for s in spans if s.kind == kind)
    return span


def client_trace(
    spans: tuple[ReadableSpan, ...],
) -> tuple[ReadableSpan, ReadableSpan, ReadableSpan]:
    """The gateway's SERVER, NATS PRODUCER and consumer's CONSUMER span, checked to be one
    chain in the client's trace: client span -> SERVER -> PRODUCER -> CONSUMER."""
    server = by_kind(spans, SpanKind.SERVER)
    send = by_kind(spans, SpanKind.PRODUCER)
    process = by_kind(spans, SpanKind.CONSUMER)
    assert {hex_id(s.context.trace_id, 32) for s in spans} == {CLIENT_TRACE}
    assert server.parent is not None
    assert hex_id(server.parent.span_id, 16) == CLIENT_SPAN
    assert server.parent.is_remote
    assert send.parent is not None
    assert send.parent.span_id == server.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.parent.is_remote  # it came over NATS
    return server, send, process


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_gateway_span_is_the_parent_of_the_consumer_span(
    client: Client, exporter: InMemorySpanExporter
) -> None:
    response = await client.get("/echo/traced", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    assert len(spans) == 3, [s.name for s in spans]
    server, send, process = client_trace(spans)
    assert server.name == "GET /echo/"
    assert attributes(server) | {"url.path": "/echo/traced"} == {
        "http.request.method": "GET",
        "http.route": "/echo/",
        "url.path": "/echo/traced",
        "url.scheme": "http",
        "client.address": "127.0.0.1",
        "http.response.status_code": 200,
    }
    assert send.name == f"send {client.service}"
    assert attributes(send) == {
        "messaging.system": "nats",
        "messaging.destination.name": client.service,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.body.size": attributes(send)["messaging.message.body.size"],
    }
    assert process.name == f"process {client.service}"
    assert attributes(process) | {"messaging.message.body.size": 0} == {
        "messaging.system": "nats",
        "messaging.destination.name": client.service,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": "q",
        "messaging.message.body.size": 0,
        "http.request.method": "GET",
        "url.path": "/echo/traced",
        "http.response.status_code": 200,
    }
    # The app sees our consumer span as its parent, not the client's span.
    seen = dict(json.loads(response.text)["headers"])
    assert seen["traceparent"] == (f"00-{CLIENT_TRACE}-{hex_id(process.context.span_id, 16)}-01")


async def test_a_request_without_traceparent_starts_a_trace(
    client: Client, exporter: InMemorySpanExporter
) -> None:
    response = await client.get("/echo/fresh")
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    server = by_kind(spans, SpanKind.SERVER)
    process = by_kind(spans, SpanKind.CONSUMER)
    assert server.parent is None
    assert len({s.context.trace_id for s in spans}) == 1
    assert process.parent is not None
    assert process.parent.span_id == by_kind(spans, SpanKind.PRODUCER).context.span_id


async def test_failures_mark_the_spans(client: Client, exporter: InMemorySpanExporter) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    (server,) = exporter.get_finished_spans()
    assert server.name == "GET"  # no route: the method alone
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is not a server error
    assert "http.route" not in attributes(server)
    exporter.clear()
    assert (await client.get("/boom")).status_code == 500  # the app raised
    spans = exporter.get_finished_spans()
    assert by_kind(spans, SpanKind.SERVER).status.status_code == StatusCode.ERROR
    assert by_kind(spans, SpanKind.CONSUMER).status.status_code == StatusCode.ERROR
    assert by_kind(spans, SpanKind.PRODUCER).status.status_code == StatusCode.UNSET  # NATS ok


async def test_grpc_call_is_one_trace_too(nats_url: str, exporter: InMemorySpanExporter) -> None:
    service = unique_service("traced-grpc")
    config = parse_config(
        {
            "nats_url": nats_url,
            "metrics_addr": "",
            "grpc_addr": "127.0.0.1:0",
            "request_timeout_seconds": 5,
            "routes": [{"grpc": "narun.test.AsyncProbe", "service": service}],
        }
    )
    gateway = Gateway(config)
    await gateway.start(metrics_server=False)
    try:
        assert gateway.grpc is not None
        async with (
            GRPCConsumer(register, service=service, nats_url=nats_url),
            grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc.port}") as channel,
        ):
            method = channel.unary_unary("/narun.test.AsyncProbe/Metadata", None, None)
            raw = await method(b"", metadata=(("traceparent", TRACEPARENT),), timeout=10)
    finally:
        await gateway.stop()
    spans = exporter.get_finished_spans()
    server, _, process = client_trace(spans)
    assert server.name == "narun.test.AsyncProbe/Metadata"
    rpc = {"rpc.system": "grpc", "rpc.service": "narun.test.AsyncProbe", "rpc.method": "Metadata"}
    assert attributes(server) == {**rpc, "rpc.grpc.status_code": 0}
    assert attributes(process).items() >= {**rpc, "rpc.grpc.status_code": 0}.items()
    # the servicer sees our consumer span as traceparent, not the client's
    seen = dict(json.loads(raw))
    assert seen["traceparent"] == f"00-{CLIENT_TRACE}-{hex_id(process.context.span_id, 16)}-01"
