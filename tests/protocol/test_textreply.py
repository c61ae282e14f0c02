"""narun.protocol.textreply: the short answers narun makes itself, as ASGI messages."""

from __future__ import annotations

import asyncio
from typing import Any

from narun.protocol.textreply import RETRY_AFTER, TEXT_PLAIN, plain_text, send_body, send_text


def sent(coroutine_of: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(dict(message))

    asyncio.run(coroutine_of(send, *args, **kwargs))
    return messages


def test_text_is_one_line_of_plain_text_with_its_length_and_fields() -> None:
    start, body = sent(send_text, 503, "No backend service available", (RETRY_AFTER,))
    assert start == {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", TEXT_PLAIN),
            (b"content-length", b"29"),
            (b"retry-after", b"1"),
        ],
    }
    assert body == {"type": "http.response.body", "body": b"No backend service available\n"}


def test_empty_text_stays_empty() -> None:
    start, body = sent(send_text, 301, "", ((b"location", b"/a/"),))
    assert (b"content-length", b"0") in start["headers"]
    assert body["body"] == b""


def test_head_counts_the_body_it_does_not_send() -> None:
    start, body = sent(send_body, 200, b"x 1\n", content_type=b"text/x", head=True)
    assert start["headers"] == [(b"content-type", b"text/x"), (b"content-length", b"4")]
    assert body["body"] == b""


def test_plain_text_fields_and_body_for_a_binary_http_answer() -> None:
    headers, body = plain_text("Service overloaded", (RETRY_AFTER,))
    assert body == b"Service overloaded\n"
    assert headers == [
        (b"content-type", TEXT_PLAIN),
        (b"content-length", b"19"),
        (b"retry-after", b"1"),
    ]
