"""The narun gateway: HTTP (and gRPC) in front, NATS requests behind.

:func:`create_app` builds the gateway as an ASGI app to serve with any ASGI server or to
mount in a Starlette/FastAPI app (see ``docs/deploy.md``).
"""

from narun.gateway.app import GatewayApp, create_app

__all__ = ["GatewayApp", "create_app"]
