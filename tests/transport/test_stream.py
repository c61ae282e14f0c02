"""Stream channels over a real nats-server: bodies both ways, credit, loss, idle, abort."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.protocol import wire
from narun.protocol.stream import WINDOW, Frame, StreamError, StreamState
from narun.transport.requester import Requester
from narun.transport.stream import StreamChannel, StreamHub
from tests.support import unique_service

Serve = Callable[[StreamChannel, Msg], Coroutine[Any, Any, None]]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def _consumer(nc: Client, subject: str, serve: Serve, *, idle: float = 5.0) -> StreamHub:
    """A streaming consumer on ``subject``: ``serve`` runs in a task per request."""
    hub = StreamHub(nc)
    await hub.start()
    tasks: set[asyncio.Task[None]] = set()

    async def on_request(msg: Msg) -> None:
        streamed = msg.subject.endswith(".stream")
        assert msg.headers is not None
        credit = wire.parse_window(msg.headers.get(wire.STREAM))
        assert credit is not None
        state = StreamState(is_gateway=False, body_streamed=streamed, peer_credit=credit)
        channel = hub.open(
            state,
            peer=msg.reply,
            idle=idle,
            first_headers={wire.STREAM_CREDIT: str(state.granted if streamed else 0)},
        )
        task = asyncio.create_task(serve(channel, msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await nc.subscribe(subject, cb=on_request)
    await nc.flush()
    return hub


def _data(size: int, seed: int = 0) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sent += len(piece)
            yield piece

    return gen()


async def _echo(channel: StreamChannel, msg: Msg) -> None:
    channel.start()
    await channel.send_credit()
    await channel.send_head(msg.data, fin=False)
    while (chunk := await channel.read()) is not None:
        await channel.write(chunk)
    await channel.end()


async def test_a_body_goes_both_ways_whole_within_the_window(nc: Client) -> None:
    service = unique_service("echo")
    await _consumer(nc, wire.stream_subject(service), _echo)
    requester = Requester(nc)
    await requester.start()
    channel = await requester.open_stream(
        wire.stream_subject(service), b"the head", {wire.STREAM: str(WINDOW)}
    )
    channel.start(5.0)
    size = 24 * 1024 * 1024
    sent = hashlib.sha256()

    async def upload() -> None:
        async for piece in _data(size):
            sent.update(piece)
            await channel.write(piece)
        await channel.end()

    uploader = asyncio.create_task(upload())
    head = await asyncio.wait_for(channel.wait_head(), 10)
    assert isinstance(head, Frame)
    assert head.data == b"the head"
    got = hashlib.sha256()
    total = 0
    buffered_max = 0
    while (chunk := await asyncio.wait_for(channel.read(), 10)) is not None:
        got.update(chunk)
        total += len(chunk)
        buffered_max = max(buffered_max, channel.state.received - channel.state.consumed_bytes)
        if total < 4 * 1024 * 1024:
            await asyncio.sleep(0.001)  # a slow reader for a while: the sender waits
    await uploader
    assert total == size
    assert got.hexdigest() == sent.hexdigest()
    assert buffered_max <= WINDOW
    assert channel.done
    assert requester.active_streams == 0
    await requester.stop()


async def test_a_lost_frame_aborts_both_ends(nc: Client) -> None:
    service = unique_service("lossy")
    seen: list[StreamError] = []

    async def lossy(channel: StreamChannel, msg: Msg) -> None:
        channel.start()
        await channel.send_head(b"h", fin=False)
        await channel.write(b"one")
        await channel.flush()
        channel.state.next_seq()  # a frame number used but never sent: a lost frame
        await channel.write(b"two")
        try:
            await asyncio.wait_for(channel.write(b"x" * (2 * WINDOW)), 5)
        except StreamError as exc:
            seen.append(exc)

    await _consumer(nc, service, lossy)
    requester = Requester(nc)
    await requester.start()
    reply = await requester.request(service, b"req", {wire.STREAM: str(WINDOW)}, 5.0)
    channel = requester.stream_of(reply)
    assert channel is not None
    assert await channel.read() == b"one"
    with pytest.raises(StreamError) as info:
        await channel.read()
    assert info.value.code == 502
    assert "missing" in info.value.reason
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen, "the consumer was not told"
    assert seen[0].remote
    assert seen[0].code == 502
    await requester.stop()


async def test_a_silent_peer_times_out_and_heartbeats_keep_a_quiet_one(nc: Client) -> None:
    service = unique_service("idle")
    aborted: list[StreamError] = []

    async def silent(channel: StreamChannel, msg: Msg) -> None:
        # No heartbeats: channel.start() is never called.
        await channel.send_head(b"h", fin=False)
        while not channel.done:  # noqa: ASYNC110 (no event to wait on here)
            await asyncio.sleep(0.05)
        if channel.state.abort_error is not None:
            aborted.append(channel.state.abort_error)

    async def quiet(channel: StreamChannel, msg: Msg) -> None:
        channel.start()  # heartbeats every idle/3
        await channel.send_head(b"h", fin=False)
        await asyncio.sleep(2.0)  # four idle timeouts of the gateway
        await channel.write(b"late but alive")
        await channel.end()

    await _consumer(nc, service, silent, idle=30)
    await _consumer(nc, service + "-q", quiet, idle=0.5)
    requester = Requester(nc)
    await requester.start()
    headers = {wire.STREAM: str(WINDOW)}

    reply = await requester.request(service, b"", headers, 5.0)
    channel = requester.stream_of(reply)
    assert channel is not None
    channel.start(0.5)
    with pytest.raises(StreamError) as info:
        await asyncio.wait_for(channel.read(), 5)
    assert info.value.code == 504
    for _ in range(100):
        if aborted:
            break
        await asyncio.sleep(0.05)
    assert aborted
    assert aborted[0].code == 504
    assert aborted[0].remote

    reply = await requester.request(service + "-q", b"", headers, 5.0)
    channel = requester.stream_of(reply)
    assert channel is not None
    channel.start(0.5)
    assert await asyncio.wait_for(channel.read(), 5) == b"late but alive"
    assert await channel.read() is None
    await requester.stop()


async def test_a_streamed_request_nobody_takes_gets_the_single_reply(nc: Client) -> None:
    requester = Requester(nc)
    await requester.start()
    subject = wire.stream_subject(unique_service("nobody"))
    channel = await requester.open_stream(subject, b"head", {wire.STREAM: str(WINDOW)})
    reply = await asyncio.wait_for(channel.wait_head(), 5)
    assert isinstance(reply, Msg)
    assert reply.headers is not None
    assert reply.headers.get("Status") == "503"
    with pytest.raises(StreamError):
        await channel.write(b"body")
    assert requester.active_streams == 0
    await requester.stop()


async def test_an_abort_reaches_the_reader_and_late_frames_are_dropped(nc: Client) -> None:
    service = unique_service("abort")
    done = asyncio.Event()

    async def aborting(channel: StreamChannel, msg: Msg) -> None:
        channel.start()
        await channel.send_head(b"h", fin=False)
        await channel.write(b"part")
        await channel.flush()
        await channel.abort(500, "the app failed")
        # Frames after the abort: the gateway must ignore them.
        await nc.publish(msg.reply, b"\x01\x00\x00\x00\x09late")
        done.set()

    await _consumer(nc, service, aborting)
    requester = Requester(nc)
    await requester.start()
    reply = await requester.request(service, b"", {wire.STREAM: str(WINDOW)}, 5.0)
    channel = requester.stream_of(reply)
    assert channel is not None
    assert await channel.read() == b"part"
    with pytest.raises(StreamError) as info:
        await channel.read()
    assert info.value.remote
    assert info.value.code == 500
    await asyncio.wait_for(done.wait(), 5)
    await nc.flush()
    assert channel.state.abort_error is info.value
    await requester.stop()


async def test_small_writes_are_gathered_into_frames_in_order(nc: Client) -> None:
    service = unique_service("gather")

    async def chatty(channel: StreamChannel, msg: Msg) -> None:
        channel.start()
        await channel.send_head(b"h", fin=False)
        for i in range(1000):  # 1000 writes in one loop step each: few frames
            await channel.write(b"%04d," % i)
        await channel.end()

    await _consumer(nc, service, chatty)
    requester = Requester(nc)
    await requester.start()
    reply = await requester.request(service, b"", {wire.STREAM: str(WINDOW)}, 5.0)
    channel = requester.stream_of(reply)
    assert channel is not None
    pieces = []
    while (chunk := await asyncio.wait_for(channel.read(), 5)) is not None:
        pieces.append(chunk)
    assert b"".join(pieces) == b"".join(b"%04d," % i for i in range(1000))
    assert len(pieces) < 10  # gathered, not one frame per write
    await requester.stop()


async def test_a_writer_that_reuses_its_buffer_still_sends_what_it_wrote(nc: Client) -> None:
    # Writes are kept as pieces until their frame leaves; a bytearray or a view of one
    # may change once write() returns, so what was written then is what must arrive.
    service = unique_service("reuse")
    await _consumer(nc, wire.stream_subject(service), _echo)
    requester = Requester(nc)
    await requester.start()
    channel = await requester.open_stream(
        wire.stream_subject(service), b"h", {wire.STREAM: str(WINDOW)}
    )
    channel.start(5.0)
    expected = bytearray()

    async def upload() -> None:
        buf = bytearray(100_000)
        for i in range(40):
            buf[:] = bytes((i,)) * len(buf)
            expected.extend(buf)
            await channel.write(buf if i % 2 else memoryview(buf)[: len(buf)])
        await channel.end()

    uploader = asyncio.create_task(upload())
    head = await asyncio.wait_for(channel.wait_head(), 10)
    assert isinstance(head, Frame)
    got = bytearray()
    while (chunk := await asyncio.wait_for(channel.read(), 10)) is not None:
        got.extend(chunk)
    await uploader
    assert got == expected
    await requester.stop()
