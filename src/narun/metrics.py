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

    def observe_http(self, method: str, path: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request; ``path`` is the route pattern."""
        self.http_requests.labels(method, path, str(status)).inc()
        self.http_duration.labels(method, path).observe(seconds)

    def observe_nats(self, subject: str, status: str) -> None:
        """Record one NATS request outcome: ``success``, ``timeout`` or ``error``."""
        self.nats_requests.labels(subject, status).inc()
