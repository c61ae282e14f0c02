"""Apps that stream, for the stream tests: a FastAPI app and a Flask app with the same routes.

- ``GET /sse?n=N&gap=S``: N Server-Sent Events, S seconds apart; each event's data is
  the app's ``time.time()`` when it yielded it.
- ``GET /download?size=N``: N bytes of :func:`pattern` data, produced as it is sent
  (no ``Content-Length``).
- ``GET /whole?size=N``: N bytes in one body message (with ``Content-Length``).
- ``POST /upload``: reads the body as a stream; answers JSON ``size``, ``sha256`` and
  ``first_at`` (the app's ``time.time()`` when the first non-empty piece arrived).
- ``GET /slow?seconds=S`` and ``GET /endless``: a long unary request and an endless
  stream; when cancelled (or the client is gone) they append a line to the file named by
  ``NARUN_TEST_MARKS`` (``cancelled slow`` / ``cancelled endless``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from flask import Flask, request
from flask import Response as FlaskResponse

__all__ = ["asgi_app", "pattern", "pattern_digest", "wsgi_app"]

BLOCK = 64 * 1024


def _block(seed: int = 0) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (BLOCK // 32)


def pattern(size: int, seed: int = 0) -> Iterator[bytes]:
    """``size`` bytes of a repeating 64 KiB block, in 64 KiB pieces (never held whole)."""
    block = _block(seed)
    left = size
    while left > 0:
        piece = block if left >= BLOCK else block[:left]
        left -= len(piece)
        yield piece


def pattern_digest(size: int, seed: int = 0) -> str:
    """The SHA-256 of ``pattern(size, seed)``."""
    digest = hashlib.sha256()
    for piece in pattern(size, seed):
        digest.update(piece)
    return digest.hexdigest()


def _mark(what: str) -> None:
    path = os.environ.get("NARUN_TEST_MARKS")
    if path:
        with open(path, "a") as f:
            f.write(what + "\n")


# --- FastAPI ---------------------------------------------------------------------------

asgi_app = FastAPI()


@asgi_app.get("/sse")
async def sse(n: int = 3, gap: float = 0.5) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for i in range(n):
            if i:
                await asyncio.sleep(gap)
            yield f"id: {i}\ndata: {time.time()!r}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")


@asgi_app.get("/download")
async def download(size: int) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for piece in pattern(size):
            yield piece

    return StreamingResponse(body(), media_type="application/octet-stream")


@asgi_app.get("/whole")
async def whole(size: int) -> Response:
    return Response(b"".join(pattern(size)), media_type="application/octet-stream")


@asgi_app.post("/upload")
async def upload(req: Request) -> JSONResponse:
    digest = hashlib.sha256()
    size = 0
    first_at = None
    async for piece in req.stream():
        if piece and first_at is None:
            first_at = time.time()
        size += len(piece)
        digest.update(piece)
    return JSONResponse({"size": size, "sha256": digest.hexdigest(), "first_at": first_at})


@asgi_app.get("/slow")
async def slow(seconds: float = 30) -> Response:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _mark("cancelled slow")
        raise
    return Response(b"done")


@asgi_app.get("/endless")
async def endless() -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.05)
        except (asyncio.CancelledError, GeneratorExit):
            _mark("cancelled endless")
            raise

    return StreamingResponse(body(), media_type="text/plain")


# --- Flask -------------------------------------------------------------------------------

wsgi_app = Flask(__name__)


@wsgi_app.get("/sse")
def w_sse() -> FlaskResponse:
    n = int(request.args.get("n", 3))
    gap = float(request.args.get("gap", 0.5))

    def events() -> Iterator[bytes]:
        for i in range(n):
            if i:
                time.sleep(gap)
            yield f"id: {i}\ndata: {time.time()!r}\n\n".encode()

    return FlaskResponse(events(), mimetype="text/event-stream")


@wsgi_app.get("/download")
def w_download() -> FlaskResponse:
    return FlaskResponse(pattern(int(request.args["size"])), mimetype="application/octet-stream")


@wsgi_app.get("/whole")
def w_whole() -> FlaskResponse:
    body = b"".join(pattern(int(request.args["size"])))
    return FlaskResponse(body, mimetype="application/octet-stream")


@wsgi_app.post("/upload")
def w_upload() -> FlaskResponse:
    digest = hashlib.sha256()
    size = 0
    first_at = None
    stream = request.stream
    while piece := stream.read(BLOCK):
        if first_at is None:
            first_at = time.time()
        size += len(piece)
        digest.update(piece)
    return FlaskResponse(
        f'{{"size": {size}, "sha256": "{digest.hexdigest()}", "first_at": {first_at!r}}}',
        mimetype="application/json",
    )


@wsgi_app.get("/slow")
def w_slow() -> FlaskResponse:
    time.sleep(float(request.args.get("seconds", 30)))
    return FlaskResponse(b"done")


@wsgi_app.get("/endless")
def w_endless() -> FlaskResponse:
    def body() -> Iterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                time.sleep(0.05)
        except GeneratorExit:
            _mark("cancelled endless")
            raise

    return FlaskResponse(body(), mimetype="text/plain")
