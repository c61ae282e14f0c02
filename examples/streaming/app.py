"""A FastAPI app that streams: Server-Sent Events, a large download, an upload read as it
arrives. Through ``narun gateway`` each event reaches the client as it is produced, and
bodies of any size flow with bounded memory (see docs/streaming.md).

Run it with ``narun serve examples.streaming.app:app --service streaming`` and route
``/stream/`` to the ``streaming`` service (``make demo`` does both).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI(title="narun streaming example")

_BLOCK = b"narun streams this body as it is produced.\n" * 1489  # ~64 KiB


@app.get("/stream/events")
async def events(n: int = 5, every: float = 1.0) -> StreamingResponse:
    """``n`` Server-Sent Events, one every ``every`` seconds."""

    async def produce() -> AsyncIterator[bytes]:
        for i in range(1, n + 1):
            if i > 1:
                await asyncio.sleep(every)
            data = json.dumps({"event": i, "of": n, "at": round(time.time(), 3)})
            yield f"id: {i}\ndata: {data}\n\n".encode()

    return StreamingResponse(produce(), media_type="text/event-stream")


@app.get("/stream/download")
async def download(mib: int = 100) -> StreamingResponse:
    """``mib`` MiB of text, produced as it is sent (no ``Content-Length``: chunked)."""
    size = mib * 1024 * 1024

    async def produce() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            piece = _BLOCK if left >= len(_BLOCK) else _BLOCK[:left]
            left -= len(piece)
            yield piece

    headers = {"Content-Disposition": f'attachment; filename="narun-{mib}MiB.txt"'}
    return StreamingResponse(produce(), media_type="text/plain", headers=headers)


@app.post("/stream/upload")
async def upload(request: Request) -> dict[str, object]:
    """Read the body as it arrives; answer its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    async for piece in request.stream():
        size += len(piece)
        digest.update(piece)
    return {"bytes": size, "sha256": digest.hexdigest()}
