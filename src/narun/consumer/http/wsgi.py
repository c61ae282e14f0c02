"""Serve a WSGI application (Flask, Django's WSGI handler, ...) through the ASGI bridge.

WSGI apps block, so they run on a thread pool sized to the consumer's concurrency.
"""

from __future__ import annotations

from typing import Any, cast

from a2wsgi import WSGIMiddleware

from narun._types import ASGIApp, WSGIApp

__all__ = ["wsgi_to_asgi"]


def wsgi_to_asgi(app: WSGIApp, *, workers: int) -> ASGIApp:
    """Wrap ``app`` as an ASGI app running on ``workers`` threads."""
    return cast(ASGIApp, WSGIMiddleware(cast(Any, app), workers=workers))
