"""The gateway's client-disconnect watch (narun.gateway.streams.DisconnectWatch)."""

from __future__ import annotations

import asyncio

import pytest

from narun._types import Message
from narun.gateway.streams import DisconnectWatch


async def test_a_client_that_leaves_cancels_the_waiting_request() -> None:
    watch = DisconnectWatch(delay=0.02)
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def request() -> str:
        task = asyncio.current_task()
        assert task is not None
        watch.add(task, receive)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            assert watch.remove(task)  # cancelled because the client left
            return "client gone"
        watch.remove(task)
        return "answered"

    waiting = asyncio.create_task(request())
    await asyncio.sleep(0.1)  # watched from between one and two ticks on
    gone.set()
    assert await asyncio.wait_for(waiting, 2) == "client gone"


async def test_quick_requests_start_no_watcher_and_are_not_cancelled() -> None:
    watch = DisconnectWatch(delay=0.05)
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        return {"type": "http.disconnect"}

    task = asyncio.current_task()
    assert task is not None
    for _ in range(100):
        watch.add(task, receive)
        assert not watch.remove(task)
    await asyncio.sleep(0.2)
    assert calls == 0


@pytest.mark.parametrize("delay", [0.01])
async def test_a_finished_request_is_not_cancelled_later(delay: float) -> None:
    watch = DisconnectWatch(delay=delay)
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def request() -> None:
        task = asyncio.current_task()
        assert task is not None
        watch.add(task, receive)
        await asyncio.sleep(0.1)  # long enough to be watched
        assert not watch.remove(task)
        gone.set()  # the client leaves after the answer: nothing happens
        await asyncio.sleep(0.1)

    await asyncio.wait_for(request(), 2)
