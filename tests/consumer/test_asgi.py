"""The ASGI bridge and lifespan runner, as plain unit tests (no NATS)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from narun._types import Receive, Scope, Send
from narun.consumer.http.asgi import ASGIBridge, Lifespan, build_scope, parse_client, replace_fields
from narun.protocol.bhttp import Request

GO_SHAPED = Request(
    method="POST",
    scheme="",
    authority="example.com:8080",
    path="/a%20b/c?x=1&y=%C3%A9",
    headers=((b"Content-Type", b"text/plain"), (b"content-length", b"2")),
    content=b"hi",
)


def test_scope_from_a_go_shaped_request() -> None:
    scope = build_scope(GO_SHAPED, client=("10.0.0.1", 5555), state={"k": 1})
    assert scope["type"] == "http"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"  # Go narun sends an empty scheme
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1&y=%C3%A9"
    assert scope["headers"][0] == (b"host", b"example.com:8080")
    assert (b"content-type", b"text/plain") in scope["headers"]  # names lower-cased
    assert scope["client"] == ("10.0.0.1", 5555)
    assert scope["server"] == ("example.com", 8080)
    assert scope["state"] == {"k": 1}
    assert scope["root_path"] == ""


def test_scope_keeps_an_explicit_host_field_and_defaults() -> None:
    request = Request(method="GET", scheme="https", authority="", path="", headers=())
    scope = build_scope(request)
    assert scope["path"] == "/"
    assert scope["scheme"] == "https"
    assert scope["server"] is None
    assert scope["client"] is None
    assert "state" not in scope


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("", None),
        (None, None),
        ("nohost", None),
        ("h:notaport", None),
    ],
)
def test_parse_client(value: str | None, parsed: tuple[str, int] | None) -> None:
    assert parse_client(value) == parsed


async def reply_app(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    body = message["body"]
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
        }
    )
    await send({"type": "http.response.body", "body": body[:1], "more_body": True})
    await send({"type": "http.response.body", "body": body[1:]})


async def test_bridge_collects_a_streamed_response() -> None:
    response = await ASGIBridge(reply_app)(GO_SHAPED, client=None)
    assert response.status == 201
    assert response.headers == ((b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"))
    assert response.content == b"hi"


async def test_bridge_strips_the_body_of_head() -> None:
    head = Request(method="HEAD", scheme="http", authority="x", path="/", content=b"hi")
    response = await ASGIBridge(reply_app)(head, client=None)
    assert response.status == 201
    assert response.content == b""


async def test_exception_becomes_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("the database password is hunter2")

    response = await ASGIBridge(boom)(GO_SHAPED, client=None)
    assert response.status == 500
    assert b"hunter2" not in response.content
    assert "hunter2" in caplog.text  # the detail goes to the log


async def test_exception_after_response_start_is_still_a_500() -> None:
    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("late")

    response = await ASGIBridge(half)(GO_SHAPED, client=None)
    assert response.status == 500


async def test_app_that_sends_nothing_is_a_500() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    response = await ASGIBridge(silent)(GO_SHAPED, client=None)
    assert response.status == 500


async def test_disconnect_is_reported_after_the_response() -> None:
    seen: list[str] = []

    async def waits(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        seen.append((await receive())["type"])

    response = await asyncio.wait_for(ASGIBridge(waits)(GO_SHAPED, client=None), 2)
    assert response.content == b"ok"
    assert seen == ["http.request", "http.disconnect"]


async def test_lifespan_state_reaches_requests() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "connected"
                    events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = scope["state"]["db"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    lifespan = Lifespan(app)
    await lifespan.startup()
    response = await ASGIBridge(app, state=lifespan.state)(GO_SHAPED, client=None)
    await lifespan.shutdown()
    assert response.content == b"connected"
    assert events == ["startup", "shutdown"]


async def test_lifespan_startup_failure_raises() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="no database"):
        await Lifespan(app).startup()


async def test_app_without_lifespan_support_is_served() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", "lifespan not supported"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lifespan = Lifespan(app)
    await lifespan.startup()
    assert not lifespan.supported
    await lifespan.shutdown()
    response = await ASGIBridge(app)(GO_SHAPED, client=None)
    assert response.status == 204


def test_detect_interface() -> None:
    from narun.consumer import detect_interface
    from narun.errors import ConfigError

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        return None

    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        return []

    class Callable2:
        def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
            return []

    assert detect_interface(asgi) == "asgi"
    assert detect_interface(wsgi) == "wsgi"
    assert detect_interface(Callable2()) == "wsgi"
    with pytest.raises(ConfigError, match="not callable"):
        detect_interface(42)
    with pytest.raises(ConfigError, match="ASGI or WSGI"):
        detect_interface(lambda: None)


@pytest.mark.parametrize(
    "fields",
    [
        (),
        ((b"a", b"1"),),
        ((b"X-Request-ID", b"sent"), (b"a", b"1")),  # the client's, not last
        ((b"a", b"1"), (b"x-request-id", b"sent")),  # last, as narun's gateway puts it
    ],
)
def test_scope_gets_the_request_id_unless_the_request_has_one(
    fields: tuple[tuple[bytes, bytes], ...],
) -> None:
    request = Request(method="GET", scheme="http", authority="h", path="/", headers=fields)
    ids = [v for k, v in build_scope(request, request_id="ctl")["headers"] if k == b"x-request-id"]
    assert ids == ([b"sent"] if fields and b"sent" in dict(fields).values() else [b"ctl"])


def test_trace_fields_replace_the_clients() -> None:
    headers = [(b"traceparent", b"client"), (b"tracestate", b"c=1"), (b"a", b"1")]
    out = replace_fields(headers, [("traceparent", "ours")])
    assert out == [(b"a", b"1"), (b"traceparent", b"ours")]
