"""narun.gateway.edge: mount prefix, size caps and forwarded headers, as ASGI middleware."""

from __future__ import annotations

from typing import Any

import pytest

from narun._types import Message, Receive, Scope, Send
from narun.errors import PayloadTooLarge
from narun.gateway.edge import Edge, strip_root_path
from narun.observe.metrics import GatewayMetrics
from narun.protocol.forwarded import TrustedProxies


class Inner:
    """The app behind the edge: records the scope, reads the body, answers 200."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.body = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            self.body += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http_scope(**over: Any) -> Scope:
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/echo/x",
        "raw_path": b"/echo/x",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gw:8080")],
        "client": ("192.0.2.1", 1234),
    }
    scope.update(over)
    return scope


async def call(edge: Edge, scope: Scope, chunks: list[bytes] | None = None) -> list[Message]:
    parts = list(chunks or [b""])
    sent: list[Message] = []

    async def receive() -> Message:
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message: Message) -> None:
        sent.append(message)

    await edge(scope, receive, send)
    return sent


async def test_scope_carries_the_resolved_origin() -> None:
    inner = Inner()
    edge = Edge(inner, trusted_proxies=TrustedProxies(["192.0.2.0/24"]))
    headers = [
        (b"host", b"gw:8080"),
        (b"x-forwarded-for", b"203.0.113.5"),
        (b"x-forwarded-proto", b"https"),
    ]
    sent = await call(edge, http_scope(headers=headers))
    assert sent[0]["status"] == 200
    (seen,) = inner.scopes
    assert seen["client"] == ("203.0.113.5", 0)
    assert seen["scheme"] == "https"
    assert (b"x-forwarded-for", b"203.0.113.5, 192.0.2.1") in seen["headers"]


async def test_oversized_headers_get_431_and_never_reach_the_app() -> None:
    inner = Inner()
    metrics = GatewayMetrics()
    edge = Edge(inner, max_header_bytes=100, metrics=metrics)
    sent = await call(edge, http_scope(headers=[(b"x-big", b"a" * 100)]))
    assert sent[0]["status"] == 431
    assert sent[1]["body"] == b"Request header fields too large\n"
    assert inner.scopes == []
    sample = metrics.registry.get_sample_value(
        "http_gateway_requests_total",
        {"method": "POST", "path": "<unmatched>", "status_code": "431"},
    )
    assert sample == 1.0


async def test_declared_body_over_the_cap_gets_413_at_once() -> None:
    inner = Inner()
    edge = Edge(inner, max_body_bytes=10)
    sent = await call(edge, http_scope(headers=[(b"content-length", b"11")]))
    assert sent[0]["status"] == 413
    assert inner.scopes == []


async def test_streamed_body_over_the_cap_raises_in_receive() -> None:
    edge = Edge(Inner(), max_body_bytes=10)
    with pytest.raises(PayloadTooLarge):
        await call(edge, http_scope(), chunks=[b"123456", b"789012"])


async def test_body_within_the_cap_passes() -> None:
    inner = Inner()
    edge = Edge(inner, max_body_bytes=10)
    sent = await call(edge, http_scope(), chunks=[b"12345", b"67890"])
    assert sent[0]["status"] == 200
    assert inner.body == b"1234567890"


async def test_mount_prefix_is_taken_off_the_path() -> None:
    inner = Inner()
    edge = Edge(inner)
    await call(edge, http_scope(path="/gw/echo/x", raw_path=b"/gw/echo/x", root_path="/gw"))
    assert inner.scopes[0]["path"] == "/echo/x"
    assert inner.scopes[0]["raw_path"] == b"/echo/x"
    assert inner.scopes[0]["root_path"] == "/gw"


async def test_other_scope_types_pass_through() -> None:
    inner = Inner()
    edge = Edge(inner, max_header_bytes=1)
    scope: Scope = {"type": "lifespan"}

    async def receive() -> Message:
        raise AssertionError

    async def send(message: Message) -> None:
        raise AssertionError

    await edge(scope, receive, send)
    assert inner.scopes == [scope]


@pytest.mark.parametrize(
    ("path", "raw", "root", "expected"),
    [
        # Starlette >= 0.33 and uvicorn --root-path: full path, prefix in root_path.
        ("/gw/echo/x", b"/gw/echo/x", "/gw", ("/echo/x", b"/echo/x")),
        ("/a/b/c", b"/a/b/c", "/a/b", ("/c", b"/c")),
        ("/gw", b"/gw", "/gw", ("/", b"/")),
        # Percent-encoded prefix and remainder.
        ("/g w/é", b"/g%20w/%C3%A9", "/g w", ("/é", b"/%C3%A9")),
        # Older servers: path already relative; or a path outside the prefix.
        ("/echo/x", b"/echo/x", "/gw", ("/echo/x", b"/echo/x")),
        ("/gwx/y", b"/gwx/y", "/gw", ("/gwx/y", b"/gwx/y")),
        # No raw_path: only the path changes.
        ("/gw/echo", None, "/gw", ("/echo", None)),
        # A raw path that does not decode to the prefix is rebuilt from the path.
        ("/gw/a b", b"/g%77/a%20b", "/gw", ("/a b", b"/a%20b")),
        ("/a/b/c", b"/a%2Fb/c", "/a/b", ("/c", b"/c")),
    ],
)
def test_strip_root_path(
    path: str, raw: bytes | None, root: str, expected: tuple[str, bytes | None]
) -> None:
    scope: Scope = {"path": path, "root_path": root}
    if raw is not None:
        scope["raw_path"] = raw
    assert strip_root_path(scope) == expected
