"""WebSocket apps the e2e tests serve (Starlette endpoints, unchanged ASGI code).

- ``/ws/echo``: accepts with the first offered subprotocol (if any) and echoes text and
  binary messages; the text ``close <code> <reason>`` makes it close with that code.
  When the client closes, it records ``disconnect <code>`` in ``NARUN_TEST_MARKS``.
- ``/ws/refuse``: closes before accepting (the client gets 403).
- ``/ws/deny``: answers 418 with a body (the denial response extension).
- ``/ws/chat``: a tiny chat room: every text message goes to everyone connected.
- ``/ws/flood?mib=N``: accepts, sends N MiB in 64 KiB binary messages as fast as it
  can, records ``flood sent``, closes.
- ``/ws/crash``: accepts, then raises on the first message; ``/ws/boom`` raises before
  accepting; ``/ws/slow`` never answers the opening.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

_MARKS = os.environ.get("NARUN_TEST_MARKS")


def _mark(line: str) -> None:
    if _MARKS:
        with Path(_MARKS).open("a") as f:
            f.write(line + "\n")


async def echo(ws: WebSocket) -> None:
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=offered[0] if offered else None)
    _mark("accepted")
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                _mark(f"disconnect {message.get('code')}")
                return
            text = message.get("text")
            if text is not None:
                if text.startswith("close "):
                    _, code, reason = text.split(" ", 2)
                    await ws.close(int(code), reason)
                    return
                await ws.send_text(text)
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        _mark(f"disconnect {exc.code}")


async def refuse(ws: WebSocket) -> None:
    await ws.close()


async def deny(ws: WebSocket) -> None:
    await ws.send_denial_response(PlainTextResponse("no tea here", status_code=418))


async def flood(ws: WebSocket) -> None:
    await ws.accept()
    block = b"\xab" * 65536
    for _ in range(int(ws.query_params.get("mib", "1")) * 16):
        await ws.send_bytes(block)
    _mark("flood sent")
    await ws.close()


async def crash(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("the app failed after accepting")


async def boom(ws: WebSocket) -> None:
    raise RuntimeError("the app failed before accepting")


async def slow(ws: WebSocket) -> None:
    await asyncio.sleep(60)


_room: set[WebSocket] = set()


async def chat(ws: WebSocket) -> None:
    await ws.accept()
    _room.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            for peer in list(_room):
                try:
                    await peer.send_text(text)
                except Exception:
                    _room.discard(peer)
    except WebSocketDisconnect:
        pass
    finally:
        _room.discard(ws)


app = Starlette(
    routes=[
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/refuse", refuse),
        WebSocketRoute("/ws/deny", deny),
        WebSocketRoute("/ws/chat", chat),
        WebSocketRoute("/ws/crash", crash),
        WebSocketRoute("/ws/flood", flood),
        WebSocketRoute("/ws/boom", boom),
        WebSocketRoute("/ws/slow", slow),
    ]
)
