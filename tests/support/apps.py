"""The same small app twice, as ASGI (Starlette) and as WSGI (Flask), for the behavioural suite.

Endpoints (any method unless noted):
- ``/echo/...``: JSON describing the request as the app saw it.
- ``/raw``: the request body back, as application/octet-stream.
- ``/cookies``: two ``Set-Cookie`` fields.
- ``/status/<code>``: that status.
- ``/slow?seconds=S``: sleeps, then ``slept``.
- ``/boom``: raises an exception whose text must never reach a client.
- ``/big?size=N``: N bytes of ``x``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

from flask import Flask
from flask import Response as FlaskResponse
from flask import request as flask_request
from flask.typing import ResponseReturnValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SECRET = "secret-internal-detail-4711"
ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _describe(
    method: str,
    path: str,
    query: str,
    args: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    client: str | None,
    scheme: str,
) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "query": query,
        "args": args,
        "headers": headers,
        "body_b64": base64.b64encode(body).decode(),
        "client": client,
        "scheme": scheme,
    }


# --- ASGI -----------------------------------------------------------------------------


async def echo(request: Request) -> Response:
    body = await request.body()
    client = request.client.host if request.client else None
    return JSONResponse(
        _describe(
            request.method,
            request.url.path,
            request.url.query,
            list(request.query_params.multi_items()),
            [(k, v) for k, v in request.headers.items()],
            body,
            client,
            request.url.scheme,
        ),
        headers={"x-pid": str(os.getpid())},
    )


async def raw(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def cookies(request: Request) -> Response:
    response = PlainTextResponse("cookies")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    if code in (204, 304):
        return Response(status_code=code)
    return PlainTextResponse(f"status {code}", status_code=code)


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "1")))
    return PlainTextResponse("slept")


async def boom(request: Request) -> Response:
    raise RuntimeError(SECRET)


async def big(request: Request) -> Response:
    return Response(b"x" * int(request.query_params["size"]))


asgi_app = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=ALL),
        Route("/raw", raw, methods=ALL),
        Route("/cookies", cookies),
        Route("/status/{code:int}", status, methods=ALL),
        Route("/slow", slow),
        Route("/boom", boom, methods=ALL),
        Route("/big", big),
    ]
)

# --- WSGI -----------------------------------------------------------------------------

wsgi_app = Flask(__name__)


@wsgi_app.route("/echo/", defaults={"rest": ""}, methods=ALL)
@wsgi_app.route("/echo/<path:rest>", methods=ALL)
def w_echo(rest: str) -> ResponseReturnValue:
    r = flask_request
    body = r.get_data()
    desc = _describe(
        r.method,
        r.path,
        r.query_string.decode("latin-1"),
        list(r.args.items(multi=True)),
        [(k.lower(), v) for k, v in r.headers.items()],
        body,
        r.remote_addr,
        r.scheme,
    )
    response = wsgi_app.json.response(desc)
    response.headers["x-pid"] = str(os.getpid())
    return response


@wsgi_app.route("/raw", methods=ALL)
def w_raw() -> FlaskResponse:
    return FlaskResponse(flask_request.get_data(), mimetype="application/octet-stream")


@wsgi_app.route("/cookies")
def w_cookies() -> FlaskResponse:
    response = FlaskResponse("cookies", mimetype="text/plain")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@wsgi_app.route("/status/<int:code>", methods=ALL)
def w_status(code: int) -> FlaskResponse:
    if code in (204, 304):
        return FlaskResponse(status=code)
    return FlaskResponse(f"status {code}", status=code, mimetype="text/plain")


@wsgi_app.route("/slow")
def w_slow() -> FlaskResponse:
    time.sleep(float(flask_request.args.get("seconds", "1")))
    return FlaskResponse("slept", mimetype="text/plain")


@wsgi_app.route("/boom", methods=ALL)
def w_boom() -> FlaskResponse:
    raise RuntimeError(SECRET)


@wsgi_app.route("/big")
def w_big() -> FlaskResponse:
    return FlaskResponse(b"x" * int(flask_request.args["size"]))
