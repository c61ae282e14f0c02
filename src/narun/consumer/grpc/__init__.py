"""Serving grpcio servicers as a NATS Micro service (endpoint ``grpc_handler``).

Needs grpcio (``narun[grpc]``).
"""

from narun.consumer.grpc.consumer import GRPCConsumer, GRPCTarget, run

__all__ = ["GRPCConsumer", "GRPCTarget", "run"]

GrpcConsumer = GRPCConsumer
"""The former spelling of :class:`GRPCConsumer`, kept so that existing code works."""
GrpcTarget = GRPCTarget
"""The former spelling of :class:`GRPCTarget`, kept so that existing code works."""
