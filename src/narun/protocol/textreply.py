"""Short HTTP answers that narun makes itself, sent through an ASGI ``send``.

The gateway's error answers (``docs/protocol.md``, "Gateway answers to HTTP clients"),
its edge's refusals, the embeddable app's "not started" answer and the operations
endpoint all answer the same way: a whole body at once, ``Content-Length`` from it, and
for text ``text/plain; charset=utf-8`` with the message on one line.

No I/O of its own: the caller's ``send`` does the sending.
"""

from __future__ import annotations

from collections.abc import Iterable

from narun._types import Send

__all__ = ["RETRY_AFTER", "TEXT_PLAIN", "Field", "send_body", "send_text"]

Field = tuple[bytes, bytes]
"""An HTTP field as ASGI has it: lower-case name, value."""

TEXT_PLAIN = b"text/plain; charset=utf-8"
"""The content type of every text answer."""
RETRY_AFTER: Field = (b"retry-after", b"1")
"""The field a transient 503 carries."""


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
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    headers.extend(fields)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_text(
    send: Send, status: int, text: str, fields: Iterable[Field] = (), *, head: bool = False
) -> None:
    """Answer ``status`` with ``text`` and a line end as plain text (empty stays empty)."""
    body = text.encode() + b"\n" if text else b""
    await send_body(send, status, body, fields, content_type=TEXT_PLAIN, head=head)
