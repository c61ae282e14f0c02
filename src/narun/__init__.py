"""narun: put NATS behind plain HTTP and gRPC.

The gateway (:mod:`narun.gateway`) takes HTTP and gRPC calls and forwards them as NATS
requests to NATS Micro services; the consumer library (:mod:`narun.consumer`) serves
ordinary ASGI, WSGI and grpcio apps as those services.
"""

from narun.errors import NarunError

__all__ = ["NarunError", "__version__"]

__version__ = "0.1.0"
