"""The standard gRPC health servicer (grpcio-health-checking) served over NATS by narun.

``narun.test.HealthControl/Set`` (raw bytes ``service:status``, status 1 SERVING or 2
NOT_SERVING) changes what the servicer reports, so that a ``Watch`` through the gateway
sees a change.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from narun.consumer import GRPCTarget

WATCHED = "narun.test.Watched"


def register(target: GRPCTarget) -> None:
    """The Health servicer, with ``WATCHED`` SERVING, and its control method."""
    servicer = health.HealthServicer()
    servicer.set(WATCHED, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, target)

    def set_status(request: bytes, context: grpc.ServicerContext) -> bytes:
        service, _, status = request.decode().partition(":")
        servicer.set(service, int(status))
        return b"ok"

    handler = grpc.unary_unary_rpc_method_handler(set_status)
    target.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("narun.test.HealthControl", {"Set": handler}),)
    )
