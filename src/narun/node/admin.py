"""``narun admin``: one web page for every node, app and instance, seen through NATS.

Everything the page shows is already in NATS: node states (with their instances, statuses,
restarts and memory) in ``node-runner-states``, the specs in ``app-configs``, the output
lines in the ``NARUN_LOGS`` stream. So one admin process anywhere NATS is reachable sees
all nodes, and nodes need no HTTP port for it. Stop and restart travel as NATS requests
to ``narun.node.<node>.control``, and only with the admin credential (a bearer token).

Endpoints: ``GET /`` (the page), ``GET /api/state`` (JSON), ``GET /api/logs?app=A&instance=I``
(Server-Sent Events: the last lines, then live ones), ``POST /api/control`` (JSON
``{node, instance_id, action}``; ``Authorization: Bearer <token>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

import nats.errors
from nats.aio.client import Client

from narun._types import Receive, Scope, Send
from narun.node import client
from narun.node.admin_page import PAGE
from narun.node.schema import LogLine, control_subject, now_iso
from narun.node.store import NodeError

__all__ = ["AdminApp"]

logger = logging.getLogger(__name__)

_JSON = b"application/json"


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = _JSON, **more: bytes
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
        *((k.replace("_", "-").encode(), v) for k, v in more.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class AdminApp:
    """The admin page as an ASGI app over a connected NATS client."""

    def __init__(self, nc: Client, *, token: str | None) -> None:
        self.nc = nc
        self.token = token
        """The admin credential; None: stop and restart are refused."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/" and method == "GET":
                await _respond(send, 200, PAGE.encode(), b"text/html; charset=utf-8")
            elif path == "/api/state" and method == "GET":
                await _respond(send, 200, json.dumps(await self.state()).encode())
            elif path == "/api/logs" and method == "GET":
                await self._logs(scope, receive, send)
            elif path == "/api/control" and method == "POST":
                await self._control(scope, receive, send)
            else:
                await _respond(send, 404, _error("not found"))
        except NodeError as exc:
            await _respond(send, 503, _error(str(exc)))

    async def state(self) -> dict[str, Any]:
        """Nodes (with their instances) and apps, as the page shows them."""
        try:
            nodes = await client.list_nodes(self.nc)
            rows = await client.app_rows(self.nc)
        except NodeError:
            nodes, rows = [], []
        return {
            "now": now_iso(),
            "nodes": [asdict(n) for n in nodes],
            "apps": [
                {
                    "name": r.spec.name,
                    "version": r.spec.version,
                    "replicas": r.spec.replicas,
                    "running": r.running,
                }
                for r in rows
            ],
            "can_control": self.token is not None,
        }

    async def _logs(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        app = (query.get("app") or [""])[0]
        instance = (query.get("instance") or [None])[0]
        if not app:
            await _respond(send, 400, _error("app= is required"))
            return
        lines: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=10_000)

        def on_line(line: LogLine) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                lines.put_nowait(line)

        follow = asyncio.create_task(
            client.stream_logs(self.nc, on_line, app=app, instance=instance, last=200, follow=True)
        )
        gone = asyncio.create_task(_disconnected(receive))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        try:
            await _chunk(send, b": hello\n\n")
            while not gone.done() and not follow.done():
                get = asyncio.create_task(lines.get())
                await asyncio.wait({get, gone, follow}, timeout=15, return_when="FIRST_COMPLETED")
                if not get.done():
                    get.cancel()
                    if not gone.done() and not follow.done():  # keep the stream alive
                        await _chunk(send, b": ping\n\n")
                    continue
                line = get.result()
                data = json.dumps(asdict(line), separators=(",", ":")).encode()
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + data + b"\n\n",
                        "more_body": True,
                    }
                )
            if follow.done() and not follow.cancelled() and follow.exception() is not None:
                message = json.dumps({"error": str(follow.exception())}).encode()
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"event: error\ndata: " + message + b"\n\n",
                        "more_body": True,
                    }
                )
        finally:
            follow.cancel()
            gone.cancel()
            with contextlib.suppress(BaseException):
                await follow
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b""})

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return False
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                given = value.decode(errors="replace").removeprefix("Bearer ").strip()
                return hmac.compare_digest(given.encode(), self.token.encode())
        return False

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None:
            await _respond(send, 403, _error("no admin credential configured (--token-file)"))
            return
        if not self._authorized(scope):
            await _respond(
                send, 401, _error("wrong or missing admin token"), www_authenticate=b"Bearer"
            )
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = json.loads(body)
            node, instance, action = request["node"], request["instance_id"], request["action"]
            if action not in ("stop", "restart"):
                raise ValueError(action)
        except (ValueError, KeyError, TypeError):
            await _respond(send, 400, _error("expected {node, instance_id, action: stop|restart}"))
            return
        payload = json.dumps({"instance_id": instance, "action": action}).encode()
        try:
            reply = await self.nc.request(control_subject(str(node)), payload, timeout=5)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            await _respond(send, 504, _error(f"node {node} did not answer"))
            return
        logger.info("admin: %s %s on %s", action, instance, node)
        status = 200 if b'"ok"' in reply.data else 409
        await _respond(send, status, reply.data)


async def _chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
