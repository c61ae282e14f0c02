"""The streaming example of ``make demo`` (examples/streaming), through a real gateway."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import yaml

from tests.support import start_consumer, start_gateway, unique_service

ROOT = Path(__file__).resolve().parents[2]


def _stream_route(service: str) -> dict[str, object]:
    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    (route,) = [r for r in config["routes"] if r.get("path") == "/stream/"]
    return {**route, "service": service}


async def test_streaming_example_events_download_and_upload(nats_url: str, logs: Path) -> None:
    service = unique_service("streaming")
    consumer = start_consumer(logs, nats_url, "examples.streaming.app:app", service)
    gateway, url = start_gateway(logs, nats_url, [_stream_route(service)])
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            arrivals = []
            async with c.stream("GET", "/stream/events", params={"n": 3, "every": 0.3}) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        arrivals.append((time.monotonic(), json.loads(line[6:])))
            assert [doc["event"] for _, doc in arrivals] == [1, 2, 3]
            assert arrivals[-1][0] - arrivals[0][0] > 0.5  # as produced, not all at once

            size = 0
            async with c.stream("GET", "/stream/download", params={"mib": 8}) as r:
                assert r.status_code == 200
                assert "narun-8MiB.txt" in r.headers["content-disposition"]
                async for piece in r.aiter_bytes():
                    size += len(piece)
            assert size == 8 * 1024 * 1024

            async def body() -> AsyncIterator[bytes]:
                for i in range(40):
                    yield bytes([i]) * 65536

            expected = hashlib.sha256(b"".join(bytes([i]) * 65536 for i in range(40)))
            r2 = await c.post("/stream/upload", content=body())
            assert r2.json() == {"bytes": 40 * 65536, "sha256": expected.hexdigest()}
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()
