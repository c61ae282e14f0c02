"""Serve ASGI and WSGI apps as NATS Micro services.

>>> from narun.consumer import run
>>> run(app, service="hello", nats_url="nats://localhost:4222")  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from narun.consumer.http.consumer import Consumer, Interface, detect_interface, run
from narun.protocol.claims import HTTPClaim

__all__ = ["Consumer", "HTTPClaim", "Interface", "detect_interface", "run"]

# gRPC: imported on first use, since grpcio is an optional dependency (narun[grpc]).
# ``from narun.consumer import GRPCConsumer`` serves grpcio servicers over NATS.
__all__ += ["GRPCConsumer", "GRPCTarget"]

if TYPE_CHECKING:
    from narun.consumer.grpc import GrpcConsumer as GrpcConsumer
    from narun.consumer.grpc import GrpcTarget as GrpcTarget
    from narun.consumer.grpc.consumer import GRPCConsumer, GRPCTarget

_LAZY = ("GRPCConsumer", "GRPCTarget", "GrpcConsumer", "GrpcTarget")
"""gRPC names; ``GrpcConsumer`` and ``GrpcTarget`` are their former spellings, kept."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from narun.consumer import grpc

        return getattr(grpc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
