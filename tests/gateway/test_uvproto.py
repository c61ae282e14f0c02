"""CoalescingTransport: the writes of one loop step reach the socket as one write."""

from __future__ import annotations

import asyncio
from typing import Any

from narun.gateway.uvproto import CoalescingTransport


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name == "sockname" else default


def make() -> tuple[FakeTransport, CoalescingTransport]:
    real = FakeTransport()
    return real, CoalescingTransport(real, asyncio.get_running_loop())


async def test_writes_of_one_step_are_joined_after_the_step() -> None:
    real, proxy = make()
    proxy.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    proxy.write(bytearray(b"hi"))
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]
    proxy.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_writes_what_is_queued_first() -> None:
    real, proxy = make()
    proxy.write(b"last words")
    proxy.close()
    assert real.writes == [b"last words"]
    assert real.closing
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to do
    assert real.writes == [b"last words"]


async def test_abort_drops_what_is_queued() -> None:
    real, proxy = make()
    proxy.write(b"never sent")
    proxy.abort()
    await asyncio.sleep(0)
    assert real.writes == []
    assert real.aborted


async def test_nothing_is_written_once_the_connection_is_closing() -> None:
    real, proxy = make()
    proxy.write(b"too late")
    real.closing = True  # e.g. the peer went away before the step ended
    await asyncio.sleep(0)
    assert real.writes == []
    assert proxy.is_closing()


async def test_everything_else_is_the_real_transport() -> None:
    _, proxy = make()
    assert proxy.get_extra_info("sockname") == ("127.0.0.1", 8080)


async def test_a_whole_response_is_written_at_once_after_what_is_queued() -> None:
    real, proxy = make()
    proxy.write_whole(b"whole")
    assert real.writes == [b"whole"]
    proxy.write(b"queued")
    proxy.write_whole(b"after")
    assert real.writes == [b"whole"]
    await asyncio.sleep(0)
    assert real.writes == [b"whole", b"queuedafter"]
