"""The forwarding core both HTTP fronts share: what goes to NATS and what comes back.

Pure functions, no I/O: the ASGI app (:mod:`narun.gateway.http`) and the gateway's own
HTTP/1.1 fast path (:mod:`narun.gateway.front`) make the same Binary HTTP request, the
same NATS headers and the same answer from a reply or a failure with them, so that the
two cannot drift apart:

- :func:`to_bhttp`: the request as the backend sees it (hop-by-hop fields dropped,
  ``Host`` as the authority, the request ID, ``Content-Length`` from the body read);
- :func:`nats_headers`: the NATS headers of a request;
- :func:`reply_response`: a unary reply as a Binary HTTP response, or the error it means;
- :func:`response_fields`: the answer's status, fields and body (RFC 9110 rules for
  HEAD, 204 and 304);
- :func:`error_answer`: the status and text of a failure (``Retry-After`` on 503).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote_from_bytes

from nats.aio.msg import Msg

from narun._types import Scope
from narun.errors import BackendError, BadBackendReply, BinaryHTTPError, NarunError
from narun.observe import requestid
from narun.protocol import wire
from narun.protocol.bhttp import Request, Response, decode_response
from narun.protocol.fields import HOP_BY_HOP as CONNECTION_LEVEL
from narun.protocol.fields import end_to_end
from narun.protocol.stream import WINDOW
from narun.protocol.textreply import RETRY_AFTER, Field, plain_text

__all__ = [
    "HOP_BY_HOP",
    "RESPONSE_DROP",
    "content_length",
    "error_answer",
    "failure_status",
    "nats_headers",
    "reply_response",
    "response_fields",
    "to_bhttp",
]

# Connection-level fields that a proxy must not forward (RFC 9110 section 7.6.1): the
# shared list, plus the old Proxy-Connection and Host (which becomes :authority).
HOP_BY_HOP = CONNECTION_LEVEL | {b"proxy-connection", b"host"}
# Content-Length is recomputed from the body actually read (and Host becomes :authority).
# X-Request-ID: the gateway's own (the client's when well formed) replaces any other.
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", requestid.HEADER}
RESPONSE_DROP = HOP_BY_HOP | {b"content-length", requestid.HEADER}
"""Fields of a backend's response that the gateway does not pass on."""
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
_WINDOW = str(WINDOW)


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The request's declared ``Content-Length``, None if absent or not a number."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def to_bhttp(
    scope: Scope,
    body: bytes,
    request_id: tuple[bytes, bytes] | None = None,
    *,
    content_length: int | None = -1,
) -> Request:
    """The Binary HTTP request of ``scope`` with content ``body``.

    ``content_length``: -1 (the default) sends ``len(body)``; for a streamed body, the
    whole body's declared length, or None to send no ``content-length``.
    """
    authority = ""
    headers: list[tuple[bytes, bytes]] = []
    for name, value in scope["headers"]:
        if name in _REQUEST_DROP:
            if name == b"host":
                authority = value.decode("latin-1")
            continue
        headers.append((name, value))
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    if not target.isascii():
        # Raw UTF-8 (or other) bytes in the request line: percent-encode them, as a
        # browser would have, so that the Binary HTTP control data stays ASCII.
        target = quote_from_bytes(target, safe=_PRINTABLE_ASCII).encode("ascii")
    if content_length == -1:
        if len(body) or scope["method"] in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
    elif content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    if request_id is not None:
        headers.append(request_id)
    return Request(
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        authority=authority,
        path=target.decode("latin-1"),
        headers=tuple(headers),
        content=body,
    )


def nats_headers(
    client: tuple[str, int] | None, rid: str, timeout_ms: str, idle_ms: str | None
) -> dict[str, str]:
    """The NATS headers of a forwarded request (``idle_ms`` None: the default idle)."""
    headers = {wire.CONTENT_TYPE: wire.BHTTP_CONTENT_TYPE, wire.REQUEST_ID: rid}
    if client:
        headers[wire.CLIENT_ADDR] = wire.format_addr(client)
    headers[wire.TIMEOUT_MS] = timeout_ms
    headers[wire.STREAM] = _WINDOW
    if idle_ms is not None:  # consumers assume the default (each header costs them ~2 us)
        headers[wire.STREAM_IDLE_MS] = idle_ms
    return headers


def reply_response(reply: Msg) -> Response:
    """The response a unary reply carries.

    Raises :class:`BackendError` for a NATS Micro error reply, :class:`BadBackendReply`
    for one that is not Binary HTTP.
    """
    rh = reply.headers
    # ADR-32: either header marks an error reply (some peers send the code alone).
    if rh and (wire.SERVICE_ERROR in rh or wire.SERVICE_ERROR_CODE in rh):
        raise BackendError(rh.get(wire.SERVICE_ERROR, ""), rh.get(wire.SERVICE_ERROR_CODE, ""))
    try:
        return decode_response(reply.data)
    except BinaryHTTPError as exc:
        raise BadBackendReply(str(exc)) from None


def response_fields(
    method: str, response: Response, rid_field: Field
) -> tuple[int, list[Field], bytes]:
    """Status, header fields and body of the answer carrying ``response``."""
    head = method == "HEAD"
    # RFC 9110 6.4.1: no content in a 204 or 304, nor in any answer to HEAD, whatever
    # the backend sent (a Go consumer passes on what the handler wrote).
    bodyless = head or response.status in (204, 304)
    out = [(k, v) for k, v in end_to_end(response.headers) if k.lower() not in RESPONSE_DROP]
    if head:
        out.extend((k, v) for k, v in response.headers if k.lower() == b"content-length")
    elif not bodyless:
        out.append((b"content-length", str(len(response.content)).encode()))
    out.append(rid_field)
    return response.status, out, b"" if bodyless else response.content


def failure_status(exc: NarunError) -> int:
    """The status a failed forward answers with."""
    if isinstance(exc, BackendError):
        # The consumer's own deadline and overload answers keep their meaning; everything
        # else a consumer reports as a service error is a bad gateway for the client.
        return int(exc.code) if exc.code in ("503", "504") else 502
    return exc.http_status


def error_answer(status: int, message: str, rid_field: Field) -> tuple[list[Field], bytes]:
    """Header fields and body of a failure's answer (every 503 here is transient)."""
    return plain_text(message, (rid_field, RETRY_AFTER) if status == 503 else (rid_field,))
