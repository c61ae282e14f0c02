"""narun.gateway.lifespan: the ASGI lifespan conversation of the gateway's ASGI apps."""

from __future__ import annotations

import logging

import pytest

from narun._types import Message
from narun.gateway.lifespan import serve_lifespan


class Conversation:
    """A server's side of one lifespan scope: the messages it sends and what it got back."""

    def __init__(self, *incoming: str) -> None:
        self.incoming = [{"type": kind} for kind in incoming]
        self.sent: list[Message] = []
        self.calls: list[str] = []

    async def receive(self) -> Message:
        return self.incoming.pop(0)

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    @property
    def answers(self) -> list[str]:
        return [m["type"] for m in self.sent]


async def test_startup_then_shutdown_starts_and_stops_once_each() -> None:
    talk = Conversation("lifespan.startup", "lifespan.shutdown")
    await serve_lifespan(talk.receive, talk.send, start=talk.start, stop=talk.stop)
    assert talk.calls == ["start", "stop"]
    assert talk.answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_a_failed_start_is_reported_logged_and_never_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    talk = Conversation("lifespan.startup", "lifespan.shutdown")

    async def start() -> None:
        raise OSError("cannot connect to NATS at nats://127.0.0.1:1")

    with caplog.at_level(logging.ERROR, logger="narun.gateway.lifespan"):
        await serve_lifespan(talk.receive, talk.send, start=start, stop=talk.stop)
    assert talk.sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "cannot connect to NATS at nats://127.0.0.1:1",
        }
    ]
    assert talk.calls == []
    assert talk.incoming  # the conversation ended at the failure
    assert "cannot start: cannot connect to NATS" in caplog.text


async def test_a_shutdown_without_a_startup_still_stops_and_answers() -> None:
    talk = Conversation("lifespan.shutdown")
    await serve_lifespan(talk.receive, talk.send, start=talk.start, stop=talk.stop)
    assert talk.calls == ["stop"]
    assert talk.answers == ["lifespan.shutdown.complete"]
