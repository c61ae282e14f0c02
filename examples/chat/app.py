"""A chat room over WebSockets: an ordinary FastAPI app, served through NATS.

``GET /chat/`` is a small page; ``/chat/ws?name=...`` is the room's WebSocket: every
text message a member sends goes to every member, with joins and leaves announced.
Through ``narun gateway`` (a route with ``websocket: true``) the sockets end at the
gateway and their messages travel over NATS to whichever instance took them.

Run it with ``narun serve examples.chat.app:app --service chat`` and route ``/chat/``
(GET, ``websocket: true``) to the ``chat`` service (``make demo`` does both). One room
per instance: members on different instances do not see each other.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

app = FastAPI(title="narun chat example")

_members: dict[WebSocket, str] = {}

_PAGE = """<!doctype html>
<meta charset="utf-8"><title>narun chat</title>
<pre id="log"></pre>
<form id="f"><input id="m" autocomplete="off" placeholder="say something"></form>
<script>
const name = prompt("your name?") || "guest";
const url = location.origin.replace(/^http/, "ws") + "/chat/ws?name=" + encodeURIComponent(name);
const ws = new WebSocket(url, ["chat.v1"]);
const log = document.getElementById("log");
ws.onmessage = (e) => { log.textContent += e.data + "\\n"; };
ws.onclose = (e) => { log.textContent += "[closed " + e.code + " " + e.reason + "]\\n"; };
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault(); const m = document.getElementById("m");
  ws.send(m.value); m.value = "";
};
</script>
"""


@app.get("/chat/")
async def page() -> HTMLResponse:
    """The chat page (open it in two browser tabs)."""
    return HTMLResponse(_PAGE)


async def _broadcast(text: str) -> None:
    for member in list(_members):
        try:
            await member.send_text(text)
        except Exception:  # a member that went away: forget it
            _members.pop(member, None)


@app.websocket("/chat/ws")
async def room(ws: WebSocket, name: str = "guest") -> None:
    """Join the room as ``name``; ``/quit`` leaves with close code 4000."""
    if not name.strip() or len(name) > 32:
        await ws.close(code=1008, reason="bad name")  # before accept: HTTP 403
        return
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="chat.v1" if "chat.v1" in offered else None)
    _members[ws] = name
    await _broadcast(f"* {name} joined ({len(_members)} here)")
    try:
        while True:
            text = await ws.receive_text()
            if text == "/quit":
                await ws.close(code=4000, reason="bye")
                break
            await _broadcast(f"{name}: {text}")
    except WebSocketDisconnect:
        pass
    finally:
        _members.pop(ws, None)
        await _broadcast(f"* {name} left")
