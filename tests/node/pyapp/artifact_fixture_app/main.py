"""An ASGI app that signs its answer with its dependency (itsdangerous)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from itsdangerous import Signer

SIGNER = Signer("artifact-fixture")


def signed(text: str) -> str:
    """``text`` signed with the fixture's key."""
    return SIGNER.sign(text).decode()


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Answer every HTTP request with a signed ``hello``."""
    if scope["type"] != "http":
        return
    body = signed("hello").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
