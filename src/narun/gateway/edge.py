"""What the gateway does to a request before routing it: the edge of the network.

:class:`Edge` is ASGI middleware in front of :class:`narun.gateway.http.HTTPGateway`:

- the mount prefix (``scope["root_path"]``) is taken off ``path`` and ``raw_path``, so
  that routes match the same whether the gateway is served alone, behind a proxy that
  strips a prefix (uvicorn ``--root-path``), or mounted in a Starlette/FastAPI app;
- request header fields larger than ``max_header_bytes`` in total get 431;
- a body larger than ``max_body_bytes`` gets 413 (at once if ``Content-Length`` says so);
- client address, scheme and ``Host`` are decided by :func:`narun.protocol.forwarded.resolve`
  (``X-Forwarded-*`` believed only from ``trusted_proxies``), and fields named in
  ``Connection`` are dropped.

The inner app then sees a scope whose ``client``, ``scheme`` and ``headers`` are those
the backend must get.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from narun._types import ASGIApp, Message, Receive, Scope, Send
from narun.errors import HeadersTooLarge, NarunError, PayloadTooLarge
from narun.observe import requestid
from narun.observe.metrics import GatewayMetrics
from narun.observe.record import GatewayHttpRecord
from narun.protocol.forwarded import TrustedProxies, header_bytes, resolve
from narun.protocol.textreply import send_text

__all__ = ["Edge", "strip_root_path"]

_CLOSE = (b"connection", b"close")


def strip_root_path(scope: Scope) -> tuple[str, bytes | None]:
    """``path`` and ``raw_path`` relative to ``root_path`` (where the app is mounted).

    Current ASGI servers and Starlette's ``Mount`` keep the full path and put the prefix
    in ``root_path``; older ones pass the remainder only. Both give the same result.
    """
    path: str = scope["path"]
    raw: bytes | None = scope.get("raw_path")
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root) or path[len(root) : len(root) + 1] not in ("/", ""):
        return path, raw
    rel = path[len(root) :] or "/"
    if raw is None:
        return rel, None
    # The raw path has as many '/' before the remainder as the decoded root has.
    cut = 0
    for _ in range(root.count("/")):
        cut = raw.find(b"/", cut + 1)
        if cut < 0:
            break
    if cut > 0 and unquote(raw[:cut].decode("latin-1")) == root:
        return rel, raw[cut:]
    if cut < 0 and unquote(raw.decode("latin-1")) == root:
        return rel, b"/"
    return rel, quote(rel, safe="/:@!$&'()*+,;=~-._").encode("ascii")


class Edge:
    """ASGI middleware: mount prefix, size caps and forwarded headers (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: TrustedProxies | None = None,
        max_header_bytes: int = 64 * 1024,
        max_body_bytes: int | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.app = app
        self.trusted = trusted_proxies if trusted_proxies is not None else TrustedProxies()
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        try:
            size = header_bytes(headers)
            if size > self.max_header_bytes:
                raise HeadersTooLarge(f"header fields take {size} > {self.max_header_bytes} bytes")
            limit = self.max_body_bytes
            if limit is not None:
                for name, value in headers:
                    if name == b"content-length" and value.isdigit() and int(value) > limit:
                        raise PayloadTooLarge(f"content-length {int(value)} > max_body_bytes")
        except NarunError as exc:
            # Refused before routing: counted and logged as unmatched, without a span.
            record = GatewayHttpRecord(scope, self.metrics, None)
            record.status = exc.http_status
            try:
                fields = (_CLOSE, (requestid.HEADER, record.request_id.encode()))
                await send_text(send, exc.http_status, exc.public_message, fields)
            finally:
                record.end()
            return
        forwarded, origin = resolve(
            headers,
            peer=scope.get("client"),
            scheme=scope.get("scheme", "http"),
            trusted=self.trusted,
        )
        inner = dict(scope)
        inner["headers"] = forwarded
        inner["client"] = origin.client
        inner["scheme"] = origin.scheme
        if scope.get("root_path"):
            inner["path"], raw = strip_root_path(scope)
            if raw is not None:
                inner["raw_path"] = raw
        await self.app(inner, receive if limit is None else _capped(receive, limit), send)


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`PayloadTooLarge` once the body passes ``limit``."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise PayloadTooLarge("body over max_body_bytes")
        return message

    return capped
