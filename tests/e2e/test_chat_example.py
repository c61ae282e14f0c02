"""The chat example of ``make demo`` (examples/chat), through a real gateway, with the
route of examples/demo.yaml."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import start_consumer, start_gateway, unique_service

ROOT = Path(__file__).resolve().parents[2]


def _chat_route(service: str) -> dict[str, object]:
    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    (route,) = [r for r in config["routes"] if r.get("path") == "/chat/"]
    return {**route, "service": service}


def test_chat_room_page_broadcast_quit_and_bad_name(nats_url: str, logs: Path) -> None:
    service = unique_service("chat")
    consumer = start_consumer(logs, nats_url, "examples.chat.app:app", service)
    gateway, url = start_gateway(logs, nats_url, [_chat_route(service)])
    ws_url = url.replace("http://", "ws://") + "/chat/ws"
    try:
        page = httpx.get(url + "/chat/")
        assert page.status_code == 200
        assert "new WebSocket" in page.text

        async def go() -> None:
            async with (
                connect(ws_url + "?name=ada", subprotocols=["chat.v1"]) as ada,  # type: ignore[list-item]
                connect(ws_url + "?name=bob") as bob,
            ):
                assert ada.subprotocol == "chat.v1"
                assert bob.subprotocol is None
                assert await ada.recv() == "* ada joined (1 here)"
                assert await ada.recv() == "* bob joined (2 here)"
                assert await bob.recv() == "* bob joined (2 here)"
                await bob.send("hi ada")
                assert await ada.recv() == "bob: hi ada"
                assert await bob.recv() == "bob: hi ada"
                await ada.send("/quit")
                with pytest.raises(ConnectionClosed) as info:
                    await ada.recv()
                assert info.value.rcvd is not None
                assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")
                assert await asyncio.wait_for(bob.recv(), 5) == "* ada left"
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url + "?name=%20"):
                    pass
            assert refused.value.response.status_code == 403

        asyncio.run(go())
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()
