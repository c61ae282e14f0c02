"""Requester: its own HPUB encoding is nats-py's, byte for byte, and both paths work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.errors import NarunError, PayloadTooLarge
from narun.protocol.nats import encode_hpub, header_block
from narun.transport import direct
from narun.transport.requester import Requester
from tests.support import unique_service

HEADERS = {
    "Content-Type": "application/bhttp",
    "Narun-Client-Addr": " 10.0.0.1:5000 ",  # nats-py strips values
    "Narun-Odd": "line\r\nbreak\rand\nmore",  # ... and turns CR/LF into spaces
}


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_encode_hpub_is_what_nats_py_publishes(
    nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    monkeypatch.setattr(nc, "_send_command", capture)
    payload = b"\x00binary\r\npayload"
    await nc.publish("svc", payload, reply="_INBOX.abc.1", headers=HEADERS)
    assert sent == [encode_hpub("svc", "_INBOX.abc.1", header_block(HEADERS), payload)]


def test_a_header_name_that_is_not_a_token_is_refused() -> None:
    with pytest.raises(NarunError, match="header name"):
        header_block({"Bad Name": "x"})


@pytest.mark.parametrize("fast", [True, False])
async def test_request_reply_on_both_publish_paths(
    nc: Client, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = unique_service("req")

    async def echo(msg: Msg) -> None:
        assert msg.headers is not None
        await nc.publish(msg.reply, msg.data + msg.headers["Narun-Odd"].encode())

    await nc.subscribe(service, cb=echo)
    assert direct.fast_publish(nc)  # the installed nats-py has what the fast path needs
    monkeypatch.setitem(direct._fast_publish, type(nc), fast)
    requester = Requester(nc)
    await requester.start()
    try:
        reply = await requester.request(service, b"ping:", HEADERS, timeout=5)
        assert reply.data == b"ping:line  break and more"
    finally:
        await requester.stop()


@pytest.mark.parametrize("fast", [True, False])
async def test_headers_count_against_max_payload_on_both_paths(
    nc: Client, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(direct._fast_publish, type(nc), fast)
    requester = Requester(nc)
    await requester.start()
    try:
        fits = nc.max_payload - len(header_block(HEADERS))
        with pytest.raises(PayloadTooLarge):
            await requester.request("nobody", b"x" * (fits + 1), HEADERS, timeout=1)
    finally:
        await requester.stop()
