"""Prometheus metrics of the gateway and of consumers, with the Go narun names and labels.

Each gateway (and each consumer that serves metrics) owns a registry so that several can
live in one process (tests, embedding).
"""

from __future__ import annotations

import os
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "MULTIPROC_ENV",
    "UNMATCHED",
    "ConsumerMetrics",
    "GatewayMetrics",
    "RequestRecorder",
    "UpDown",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus_client keeps the metric values of several processes (``--workers``)."""

UNMATCHED = "<unmatched>"
"""``path`` label of HTTP requests that matched no route (one series for all of them)."""


class UpDown(Protocol):
    """An in-flight count: ``inc()`` when a request starts, ``dec()`` when it ends."""

    def inc(self) -> None: ...
    def dec(self) -> None: ...


class _Tally:
    """A count in a plain int, read by the gauge when scraped.

    A gauge child's ``inc``/``dec`` take a lock each (about 0.5 us a request for both);
    this costs a fifth of that.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


def _up_down(child: Gauge) -> UpDown:
    if os.environ.get(MULTIPROC_ENV):
        return child  # several processes (--workers): the value lives in the shared files
    tally = _Tally()
    child.set_function(lambda: tally.value)
    return tally


class GatewayMetrics:
    """The gateway's collectors, registered on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "http_gateway_requests",
            "HTTP requests handled by the gateway.",
            ["method", "path", "status_code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "http_gateway_request_duration_seconds",
            "HTTP request latency at the gateway.",
            ["method", "path"],
            registry=r,
        )
        self.grpc_requests = Counter(
            "grpc_gateway_requests",
            "gRPC calls handled by the gateway.",
            ["grpc_method", "grpc_code"],
            registry=r,
        )
        self.grpc_duration = Histogram(
            "grpc_gateway_request_duration_seconds",
            "gRPC call latency at the gateway.",
            ["grpc_method"],
            registry=r,
        )
        self.nats_requests = Counter(
            "gateway_nats_requests",
            "NATS requests sent by the gateway.",
            ["subject", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "narun_gateway_in_flight_requests",
            "Requests the gateway is handling right now.",
            ["protocol"],
            registry=r,
            multiprocess_mode="livesum",  # --workers: the sum over the live workers
        )
        self.stream_bytes = Counter(
            "narun_gateway_stream_bytes",
            "Body bytes of streamed HTTP requests and replies, by route and direction "
            "(in: from the client, out: to the client).",
            ["path", "direction"],
            registry=r,
        )
        self.stream_duration = Histogram(
            "narun_gateway_stream_duration_seconds",
            "How long streamed HTTP exchanges lasted, from the request to the stream's end.",
            ["path"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
            registry=r,
        )
        self.active_streams_gauge = Gauge(
            "narun_gateway_active_streams",
            "Streamed HTTP exchanges open right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.active_streams = _up_down(self.active_streams_gauge)
        self.route_claims_refused = Counter(
            "narun_gateway_route_claims_refused",
            "Route claims refused (outside dynamic_routes, static, or held by another).",
            ["service", "reason"],
            registry=r,
        )
        self.dynamic_routes = Gauge(
            "narun_gateway_dynamic_routes",
            "Routes in effect because a service claimed them.",
            registry=r,
            multiprocess_mode="max",
        )
        # Both series exist from the start (at 0).
        self.in_flight_http = _up_down(self.in_flight.labels("http"))
        self.in_flight_grpc = _up_down(self.in_flight.labels("grpc"))
        # ``labels()`` validates and locks on every call: cache the labelled children.
        # A cache holds one entry per label series, so it is exactly as bounded as the
        # series (route patterns, statuses, service names, methods httptools accepts).
        self._http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._nats: dict[tuple[str, str], Counter] = {}
        self._grpc: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe_http(self, method: str, path: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request; ``path`` is the route pattern."""
        key = (method, path, status)
        children = self._http.get(key)
        if children is None:
            children = self._http[key] = (
                self.http_requests.labels(method, path, str(status)),
                self.http_duration.labels(method, path),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_stream(self, path: str, bytes_in: int, bytes_out: int, seconds: float) -> None:
        """Record one finished stream of route ``path``."""
        self.stream_bytes.labels(path, "in").inc(bytes_in)
        self.stream_bytes.labels(path, "out").inc(bytes_out)
        self.stream_duration.labels(path).observe(seconds)

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        """Record one finished gRPC call; ``code`` is the status code's name."""
        key = (method, code)
        children = self._grpc.get(key)
        if children is None:
            children = self._grpc[key] = (
                self.grpc_requests.labels(method, code),
                self.grpc_duration.labels(method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_nats(self, subject: str, status: str) -> None:
        """Record one NATS request outcome: ``success``, ``timeout`` or ``error``."""
        key = (subject, status)
        child = self._nats.get(key)
        if child is None:
            child = self._nats[key] = self.nats_requests.labels(subject, status)
        child.inc()


class ConsumerMetrics:
    """A consumer's collectors (Go nconsumer's names), registered on their own registry.

    ``narun_worker_active_count{app,stream}`` counts the requests being processed and
    ``narun_request_processing_seconds{app,stream,status}`` times them; ``app`` is the
    service name, ``stream`` is ``default`` for HTTP and ``grpc`` for gRPC, ``status`` the
    HTTP status code or the gRPC code name. :meth:`recorder` binds ``app`` and ``stream``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.active = Gauge(
            "narun_worker_active_count",
            "Requests the consumer is processing right now.",
            ["app", "stream"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.processing = Histogram(
            "narun_request_processing_seconds",
            "Time the consumer took to process a request, by outcome.",
            ["app", "stream", "status"],
            registry=self.registry,
        )

    def recorder(self, app: str, stream: str) -> RequestRecorder:
        """What one endpoint records with: labelled children of ``app`` and ``stream``."""
        return RequestRecorder(self, app, stream)


class RequestRecorder:
    """Records the requests of one consumer endpoint (children cached per status)."""

    __slots__ = ("_app", "_histogram", "_seconds", "_stream", "active")

    def __init__(self, metrics: ConsumerMetrics, app: str, stream: str) -> None:
        self._app = app
        self._stream = stream
        self._histogram = metrics.processing
        self._seconds: dict[str, Histogram] = {}
        self.active = _up_down(metrics.active.labels(app, stream))
        """``narun_worker_active_count``: ``inc()`` on start, ``dec()`` at the end."""

    def observe(self, status: str, seconds: float) -> None:
        """Record one finished request with its outcome (``"200"``, ``"OK"``...)."""
        child = self._seconds.get(status)
        if child is None:
            child = self._seconds[status] = self._histogram.labels(self._app, self._stream, status)
        child.observe(seconds)
