"""Serving grpcio servicers as a NATS Micro service (endpoint ``grpc_handler``).

Needs grpcio (``narun[grpc]``).
"""

from narun.consumer.grpc.consumer import GrpcConsumer, GrpcTarget, run

__all__ = ["GrpcConsumer", "GrpcTarget", "run"]
