"""Prometheus metrics of the gateway, with the Go narun names and labels.

Each gateway owns a registry so that several can live in one process (tests, embedding).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["UNMATCHED", "GatewayMetrics"]

UNMATCHED = "<unmatched>"
"""``path`` label of HTTP requests that matched no route (one series for all of them)."""


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
        )
        # ``labels()`` validates and locks on every call: cache the labelled children.
        # A cache holds one entry per label series, so it is exactly as bounded as the
        # series (route patterns, statuses, service names, methods httptools accepts).
        self._http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._nats: dict[tuple[str, str], Counter] = {}

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

    def observe_nats(self, subject: str, status: str) -> None:
        """Record one NATS request outcome: ``success``, ``timeout`` or ``error``."""
        key = (subject, status)
        child = self._nats.get(key)
        if child is None:
            child = self._nats[key] = self.nats_requests.labels(subject, status)
        child.inc()
