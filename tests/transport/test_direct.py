"""DirectDispatch against a real nats-server: delivery, headers, reconnect, unsubscribe, drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.protocol.nats import parse_header_block
from narun.transport import direct
from narun.transport.direct import DirectDispatch
from narun.transport.server import NATSServer
from tests.support import unique_service


def nats_py_headers(raw: bytes) -> dict[str, str]:
    coro = Client()._process_headers(raw)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value or {}
    raise AssertionError("suspended")


Got = tuple[bytes, bytes, bytes, bytes]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    if not client.is_closed:
        await client.close()


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for ``check()`` to hold (a bound against a hang, not a speed claim)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


def collector() -> tuple[list[Got], direct.Handler]:
    got: list[Got] = []

    def handler(subject: bytes, reply: bytes, data: bytes, raw: bytes) -> None:
        got.append((subject, reply, data, raw))

    return got, handler


async def test_of_is_one_dispatcher_per_client(nc: Client) -> None:
    dispatch = DirectDispatch.of(nc)
    assert DirectDispatch.of(nc) is dispatch
    assert dispatch.direct  # the installed nats-py has what it needs


async def test_messages_reach_the_handler_with_the_headers_nats_py_sees(nc: Client) -> None:
    subject = unique_service("direct")
    got, handler = collector()
    seen: list[Msg] = []

    async def plain(msg: Msg) -> None:
        seen.append(msg)

    sid = await DirectDispatch.of(nc).subscribe(subject, handler)
    await nc.subscribe(subject, cb=plain)  # a nats-py subscription on the same client
    in_msgs = nc.stats["in_msgs"]
    headers = {"Content-Type": "application/bhttp", "X-Two": "a b", "Nats-Odd": " v "}
    await nc.publish(subject, b"no headers", reply="the.reply")
    await nc.publish(subject, b"\x00with\r\nheaders", headers=headers)
    await until(lambda: len(got) == 2 and len(seen) == 2, "both messages on both subscriptions")
    assert got[0] == (subject.encode(), b"the.reply", b"no headers", b"")
    assert got[1][:3] == (subject.encode(), b"", b"\x00with\r\nheaders")
    assert parse_header_block(got[1][3])[0] == seen[1].headers == {**headers, "Nats-Odd": "v"}
    assert seen[0].headers is None
    assert nc.stats["in_msgs"] == in_msgs + 4  # counted as nats-py counts them
    assert nc._subs[sid]._received == 2


async def test_no_responders_reads_as_nats_py_reads_it(nc: Client) -> None:
    inbox = nc.new_inbox()
    got, handler = collector()
    await DirectDispatch.of(nc).subscribe(inbox, handler)
    await nc.publish(unique_service("nobody"), b"", reply=inbox)
    await until(lambda: len(got) == 1, "the no-responders status")
    headers, status, _ = parse_header_block(got[0][3])
    assert (status, got[0][2]) == ("503", b"")
    # nats-server 2.11+ adds Nats-Subject; nats-py reads that block quirkily, and so do we.
    assert headers == nats_py_headers(got[0][3])


async def test_a_queue_group_shares_the_messages(nats_url: str, nc: Client) -> None:
    subject = unique_service("queue")
    other = await nats.connect(nats_url)
    try:
        got_a, handler_a = collector()
        got_b, handler_b = collector()
        await DirectDispatch.of(nc).subscribe(subject, handler_a, queue="q")
        await DirectDispatch.of(other).subscribe(subject, handler_b, queue="q")
        await nc.flush()
        await other.flush()
        for i in range(40):
            await nc.publish(subject, str(i).encode())
        await until(lambda: len(got_a) + len(got_b) >= 40, "all 40 messages")
        await asyncio.sleep(0.1)
        datas = sorted(int(g[2]) for g in got_a + got_b)
        assert datas == list(range(40))  # each exactly once
    finally:
        await other.close()


async def test_a_failing_handler_is_logged_and_the_next_message_still_arrives(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    subject = unique_service("boom")
    got: list[bytes] = []

    def handler(subject: bytes, reply: bytes, data: bytes, raw: bytes) -> None:
        got.append(data)
        if data == b"boom":
            raise RuntimeError("handler bug")

    await DirectDispatch.of(nc).subscribe(subject, handler)
    with caplog.at_level(logging.ERROR, logger="narun.transport.direct"):
        await nc.publish(subject, b"boom")
        await nc.publish(subject, b"next")
        await until(lambda: got == [b"boom", b"next"], "both messages")
    assert "handler bug" in caplog.text
    assert nc.is_connected


async def test_unsubscribe_stops_delivery(nc: Client) -> None:
    subject = unique_service("unsub")
    got, handler = collector()
    dispatch = DirectDispatch.of(nc)
    sid = await dispatch.subscribe(subject, handler)
    await nc.publish(subject, b"1")
    await until(lambda: len(got) == 1, "the first message")
    await dispatch.unsubscribe(sid)
    assert not dispatch.active(sid)
    await nc.publish(subject, b"2")
    await nc.flush()
    await asyncio.sleep(0.1)
    assert [g[2] for g in got] == [b"1"]


async def test_drain_takes_what_was_sent_before_it(nc: Client, nats_url: str) -> None:
    subject = unique_service("drain")
    got, handler = collector()
    dispatch = DirectDispatch.of(nc)
    sid = await dispatch.subscribe(subject, handler)
    await nc.flush()  # the server has the SUB before another connection publishes
    sender = await nats.connect(nats_url)
    try:
        for i in range(50):
            await sender.publish(subject, str(i).encode())
        await sender.flush()
        await dispatch.drain(sid)
        assert not dispatch.active(sid)
        assert len(got) == 50
        await sender.publish(subject, b"late")
        await sender.flush()
        await asyncio.sleep(0.1)
        assert len(got) == 50
    finally:
        await sender.close()


async def test_the_client_drains_and_closes_with_direct_subscriptions(nats_url: str) -> None:
    for end in ("drain", "close"):
        client = await nats.connect(nats_url)
        got, handler = collector()
        subject = unique_service(end)
        await DirectDispatch.of(client).subscribe(subject, handler)
        await client.publish(subject, b"x")
        await until(lambda got=got: len(got) == 1, "the message")  # type: ignore[misc]
        await asyncio.wait_for(client.drain() if end == "drain" else client.close(), 10)
        assert client.is_closed
        assert not client._subs


async def test_the_subscription_survives_a_server_restart(own_nats_server: NATSServer) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    client = await nats.connect(
        own_nats_server.url,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        reconnected_cb=on_reconnect,
    )
    try:
        subject = unique_service("restart")
        got, handler = collector()
        await DirectDispatch.of(client).subscribe(subject, handler, queue="q")
        await client.publish(subject, b"before")
        await until(lambda: len(got) == 1, "the message before the restart")
        await asyncio.to_thread(own_nats_server.stop)
        await asyncio.to_thread(own_nats_server.start)
        await asyncio.wait_for(reconnected.wait(), 20)
        await client.flush()  # the re-sent SUB is in before another connection publishes
        sender = await nats.connect(own_nats_server.url)
        try:
            await sender.publish(subject, b"after")
            await sender.flush()
        finally:
            await sender.close()
        await until(lambda: len(got) == 2, "the message after the restart")
        assert got[1][2] == b"after"
    finally:
        await client.close()


async def test_without_the_internals_it_falls_back_to_plain_subscriptions(
    nc: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(direct, "_supported", lambda nc: "Client._process_msg")
    with caplog.at_level(logging.WARNING, logger="narun.transport.direct"):
        dispatch = DirectDispatch(nc)
    assert not dispatch.direct
    assert "falls back" in caplog.text
    subject = unique_service("plain")
    got, handler = collector()
    sid = await dispatch.subscribe(subject, handler)
    await nc.publish(subject, b"a", reply="r", headers={"A": "1"})
    inbox = nc.new_inbox()
    await dispatch.subscribe(inbox, handler)
    await nc.publish(unique_service("nobody"), b"", reply=inbox)
    await until(lambda: len(got) == 2, "both messages")
    assert got[0][:3] == (subject.encode(), b"r", b"a")
    assert parse_header_block(got[0][3])[0] == {"A": "1"}
    assert parse_header_block(got[1][3])[1] == "503"
    await dispatch.unsubscribe(sid)
    assert not dispatch.active(sid)


@pytest.mark.parametrize(
    ("reply", "headers"),
    [("", None), ("_INBOX.x.1", None), ("", {"A": " 1 ", "B": "x\r\ny"}), ("r.2", {"C": "3"})],
)
async def test_publish_sends_what_nats_py_sends(
    nc: Client, monkeypatch: pytest.MonkeyPatch, reply: str, headers: dict[str, str] | None
) -> None:
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    monkeypatch.setattr(nc, "_send_command", capture)
    out_msgs = nc.stats["out_msgs"]
    await nc.publish("svc.a", b"payload\r\n", reply=reply, headers=headers)
    await direct.publish(nc, "svc.a", b"payload\r\n", reply=reply, headers=headers)
    assert nc.stats["out_msgs"] == out_msgs + 2
    # The same message; nats-py writes a double space where the reply is empty.
    line, rest = sent[0].split(b"\r\n", 1)
    assert line.replace(b"  ", b" ") + b"\r\n" + rest == sent[1]


async def test_publish_reaches_a_subscriber_and_refuses_what_nats_py_refuses(
    nats_url: str,
) -> None:
    client = await nats.connect(nats_url)
    subject = unique_service("pub")
    sub = await client.subscribe(subject)
    await direct.publish(client, subject, b"hi", headers={"K": "v"})
    msg = await sub.next_msg(timeout=5)
    assert (msg.data, msg.headers) == (b"hi", {"K": "v"})
    too_big = b"x" * (client.max_payload - 5)
    with pytest.raises(nats.errors.MaxPayloadError):  # the header block counts too
        await direct.publish(client, subject, too_big, headers={"Key": "value"})
    await client.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await direct.publish(client, subject, b"late")


def test_a_direct_msg_reads_as_a_nats_py_msg() -> None:
    raw = b"NATS/1.0\r\nA: 1\r\n\r\n"
    msg = direct.DirectMsg(Client(), "s", "r", b"d", raw)
    assert isinstance(msg, Msg)
    assert (msg.subject, msg.reply, msg.data, msg.headers) == ("s", "r", b"d", {"A": "1"})
    assert direct.DirectMsg(Client(), "s", "", b"", b"").headers is None


async def test_an_auto_unsubscribe_limit_is_kept(nc: Client) -> None:
    subject = unique_service("limit")
    got, handler = collector()
    dispatch = DirectDispatch.of(nc)
    sid = await dispatch.subscribe(subject, handler)
    await nc._subs[sid].unsubscribe(limit=2)  # nats-py's own max_msgs, on our subscription
    for i in range(5):
        await nc.publish(subject, str(i).encode())
    await nc.flush()
    await until(lambda: len(got) == 2, "the first two messages")
    await asyncio.sleep(0.1)
    assert [g[2] for g in got] == [b"0", b"1"]
    assert not dispatch.active(sid)


def test_read_size_is_raised_never_lowered() -> None:
    import nats.aio.client as nats_client

    from narun.transport.direct import READ_SIZE, raise_read_size

    before = nats_client.DEFAULT_BUFFER_SIZE
    try:
        nats_client.DEFAULT_BUFFER_SIZE = 32768
        raise_read_size()
        assert nats_client.DEFAULT_BUFFER_SIZE == READ_SIZE
        raise_read_size(1024)
        assert nats_client.DEFAULT_BUFFER_SIZE == READ_SIZE
    finally:
        nats_client.DEFAULT_BUFFER_SIZE = before
