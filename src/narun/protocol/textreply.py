"""Short HTTP answers that narun makes itself.

The gateway's error answers (``docs/protocol.md``, "Gateway answers to HTTP clients"),
its edge's refusals, the embeddable app's "not started" answer, the operations endpoint
and a consumer's Binary HTTP answers to a Go gateway all answer the same way: a whole
body at once, ``Content-Length`` from it, and for text ``text/plain; charset=utf-8``
with the message on one line.

:func:`plain_text` makes the fields and body; :func:`send_text` and :func:`send_body`
send them through an ASGI ``send``. No I/O of their own.
"""

from __future__ import annotations

from collections.abc import Iterable

from narun._types import Send

__all__ = ["RETRY_AFTER", "TEXT_PLAIN", "Field", "plain_text", "send_body", "send_text"]

Field = tuple[bytes, bytes]
"""An HTTP field as ASGI has it: lower-case name, value."""

TEXT_PLAIN = b"text/plain; charset=utf-8"
"""The content type of every text answer."""
RETRY_AFTER: Field = (b"retry-after", b"1")
"""The field a transient 503 carries."""


def plain_text(text: str, fields: Iterable[Field] = ()) -> tuple[list[Field], bytes]:
    """The header fields and body of a plain-text answer: ``text`` and a line end.

    Empty text stays an empty body. The fields are the content type, the length, then
    the extra ``fields``.
    """
    body = _line(text)
    return _head(body, TEXT_PLAIN, fields), body


def _line(text: str) -> bytes:
    return text.encode() + b"\n" if text else b""


def _head(body: bytes, content_type: bytes, fields: Iterable[Field]) -> list[Field]:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    headers.extend(fields)
    return headers


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    fields: Iterable[Field] = (),
    *,
    content_type: bytes,
    head: bool = False,
) -> None:
    """Answer ``status`` with ``body`` (of ``content_type``) and the extra ``fields``.

    For ``head`` the ``Content-Length`` still counts ``body``, which is not sent.
    """
    headers = _head(body, content_type, fields)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_text(
    send: Send, status: int, text: str, fields: Iterable[Field] = (), *, head: bool = False
) -> None:
    """Answer ``status`` with ``text`` as :func:`plain_text` makes it."""
    await send_body(send, status, _line(text), fields, content_type=TEXT_PLAIN, head=head)
