"""Serve a WSGI application (Flask, Django's WSGI handler, ...) through the ASGI bridge.

WSGI apps block, so they run on a thread pool sized to the consumer's concurrency.

a2wsgi builds the environ, but decodes ``QUERY_STRING`` as ASCII and ``PATH_INFO`` from
strict UTF-8, so raw bytes in the target (a Go gateway passes ``?q=café`` through as
UTF-8) would fail there. Such a request reaches a2wsgi with an ASCII-safe scope, and the
environ is then given the PEP 3333 strings: the bytes received, one character per byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import quote_from_bytes

from a2wsgi import WSGIMiddleware

from narun._types import ASGIApp, Receive, Scope, Send, WSGIApp

__all__ = ["wsgi_to_asgi"]

_ENVIRON = "narun.wsgi_environ"
"""Scope key: environ entries that replace a2wsgi's (PEP 3333 forms of raw bytes)."""
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def wsgi_to_asgi(app: WSGIApp, *, workers: int) -> ASGIApp:
    """Wrap ``app`` as an ASGI app running on ``workers`` threads."""
    inner = cast(ASGIApp, WSGIMiddleware(cast(Any, _pep3333(app)), workers=workers))

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (
            scope["query_string"].isascii() and scope["path"].isascii()
        ):
            scope = _ascii_safe(scope)
        await inner(scope, receive, send)

    return asgi


def _ascii_safe(scope: Scope) -> Scope:
    """A scope a2wsgi can take, carrying the true ``QUERY_STRING`` / ``PATH_INFO``."""
    query: bytes = scope["query_string"]
    path: str = scope["path"]
    environ: dict[str, str] = {}
    if not query.isascii():
        environ["QUERY_STRING"] = query.decode("latin-1")
        query = quote_from_bytes(query, safe=_PRINTABLE_ASCII).encode("ascii")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (kept as surrogates)
        raw = path.encode("utf-8", "surrogateescape")
        environ["PATH_INFO"] = raw.decode("latin-1")
        path = raw.decode("utf-8", "replace")
    return {**scope, "query_string": query, "path": path, _ENVIRON: environ}


def _pep3333(app: WSGIApp) -> WSGIApp:
    def with_raw_target(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        scope = environ.get("asgi.scope")
        if scope is not None and _ENVIRON in scope:
            environ.update(scope[_ENVIRON])
        return app(environ, start_response)

    return with_raw_target
