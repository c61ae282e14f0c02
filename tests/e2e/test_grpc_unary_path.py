"""The gateway's unary path for gRPC methods a consumer says are unary (``Narun-Grpc-Unary``).

grpcio client -> gateway process -> nats-server -> consumer. A recording consumer (a raw
NATS subscriber in a thread) shows which calls were offered a stream; the real consumer
process (``tests.support.grpc_apps``) shows that calls keep their metadata, status,
deadline and streaming behaviour once their method is known.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from nats.aio.msg import Msg

from narun.protocol import wire
from tests.support import Processes, free_port, unique_service, wait_for_port

SLOW_ROUTE_TIMEOUT = 1.0


class RecordingConsumer:
    """Answers ``/fake.Svc/*`` calls and records each request's NATS headers.

    - ``Unary``: a unary method (marks its answer ``Narun-Grpc-Unary`` when offered a stream,
      as a narun consumer does);
    - ``Plain``: answers the same without saying anything (a Go consumer);
    - ``Became``: a method that is now streaming: UNIMPLEMENTED unless offered a stream.
    """

    def __init__(self, nats_url: str, service: str) -> None:
        self.nats_url = nats_url
        self.service = service
        self.seen: queue.Queue[dict[str, str]] = queue.Queue()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def __enter__(self) -> RecordingConsumer:
        self._thread.start()
        assert self._ready.wait(10), "recording consumer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def next_headers(self) -> dict[str, str]:
        """The headers of the next request it got."""
        return self.seen.get(timeout=10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await nats.connect(self.nats_url)

        async def answer(msg: Msg) -> None:
            headers = dict(msg.headers or {})
            self.seen.put(headers)
            method = headers.get(wire.GRPC_METHOD, "")
            offered = wire.STREAM in headers
            reply = {wire.GRPC_STATUS: "0"}
            if method == "/fake.Svc/Unary" and offered:
                reply[wire.GRPC_UNARY] = "1"
            elif method == "/fake.Svc/Became":
                if offered:
                    reply[wire.GRPC_UNARY] = "1"
                else:
                    reply = {wire.GRPC_STATUS: "12", wire.GRPC_MESSAGE: "now%20streaming"}
            await nc.publish(msg.reply, b"re:" + msg.data, headers=reply)

        await nc.subscribe(self.service, queue="q", cb=answer)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()


@dataclass
class Stack:
    channel: grpc.Channel
    fake: RecordingConsumer


@pytest.fixture(scope="module")
def stack(nats_url: str, logs: Path) -> Iterator[Stack]:
    service = unique_service("grpcu")
    fake_service = unique_service("fake")
    grpc_port = free_port()
    routes: list[dict[str, Any]] = [
        {"grpc": "narun.test.AsyncProbe", "service": service},
        {"grpc": "narun.test.SyncProbe", "service": service},
        {"grpc": "narun.test.SlowProbe", "service": service, "timeout": SLOW_ROUTE_TIMEOUT},
        {"grpc": "fake.Svc", "service": fake_service},
    ]
    with RecordingConsumer(nats_url, fake_service) as fake, Processes(logs, nats_url) as procs:
        procs.consumer("tests.support.grpc_apps:register", service, "--interface", "grpc")
        gateway, _ = procs.gateway(routes, grpc_addr=f"127.0.0.1:{grpc_port}")
        wait_for_port(grpc_port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            yield Stack(channel, fake)


def unary(stack: Stack, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return stack.channel.unary_unary(method, None, None)


def request_id(call: grpc.Call) -> str:
    ids = [str(v) for k, v in call.initial_metadata() or () if k == "x-request-id"]
    assert len(ids) == 1
    return ids[0]


# -- which calls are offered a stream -------------------------------------------------


def test_a_method_said_unary_is_called_without_a_stream_offer(stack: Stack) -> None:
    offered = []
    for i in range(3):
        response, call = unary(stack, "/fake.Svc/Unary").with_call(
            f"m{i}".encode(), metadata=(("k", f"v{i}"),), timeout=10
        )
        assert response == f"re:m{i}".encode()
        headers = stack.fake.next_headers()
        offered.append(wire.STREAM in headers)
        # Every call keeps its metadata, budget and request ID on either path.
        rid = request_id(call)
        assert headers[wire.REQUEST_ID] == rid
        assert f"k=v{i}" in headers[wire.GRPC_METADATA].split(",")
        assert 0 < int(headers[wire.TIMEOUT_MS]) <= 10_200  # grpc-timeout is rounded up
    assert offered == [True, False, False]


def test_a_consumer_that_says_nothing_keeps_the_stream_offer(stack: Stack) -> None:
    for _ in range(3):
        assert unary(stack, "/fake.Svc/Plain")(b"x", timeout=10) == b"re:x"
        assert wire.STREAM in stack.fake.next_headers()


def test_unimplemented_on_the_unary_path_offers_a_stream_again(stack: Stack) -> None:
    became = unary(stack, "/fake.Svc/Became")
    assert became(b"1", timeout=10) == b"re:1"
    assert wire.STREAM in stack.fake.next_headers()
    # The method is now taken as unary; the consumer refuses it without a stream.
    with pytest.raises(grpc.RpcError) as info:
        became(b"2", timeout=10)
    error: grpc.Call = info.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "now streaming"
    assert wire.STREAM not in stack.fake.next_headers()
    # So the next call offers a stream again.
    assert became(b"3", timeout=10) == b"re:3"
    assert wire.STREAM in stack.fake.next_headers()


# -- the real consumer, once its methods are known --------------------------------------

PROBES = ["narun.test.AsyncProbe", "narun.test.SyncProbe"]


def learn(stack: Stack, probe: str) -> None:
    """Call ``Echo`` once: from now on the gateway knows it is unary."""
    assert unary(stack, f"/{probe}/Echo")(b"learn", timeout=10) == b"learn"


@pytest.mark.parametrize("probe", PROBES)
def test_known_unary_calls_keep_metadata(stack: Stack, probe: str) -> None:
    learn(stack, probe)
    metadata = (("k", "v1"), ("k", "v2"), ("blob-bin", bytes(range(256))))
    response, call = unary(stack, f"/{probe}/Echo").with_call(b"hi", metadata=metadata, timeout=10)
    assert response == b"hi"
    initial = list(call.initial_metadata() or ())
    assert [(k, v) for k, v in initial if k in {"k", "blob-bin"}] == list(metadata)
    assert re.fullmatch(r"[0-9a-f]{16}", request_id(call))
    trailing = dict(call.trailing_metadata() or ())
    assert float(str(trailing["time-remaining"])) <= 10
    assert [v for k, v in call.trailing_metadata() or () if k == "rep"] == ["1", "2"]


@pytest.mark.parametrize("probe", PROBES)
def test_known_unary_calls_keep_their_status(stack: Stack, probe: str) -> None:
    learn(stack, probe)
    abort = unary(stack, f"/{probe}/Abort")
    for _ in range(2):  # the first call is offered a stream, the second is not
        with pytest.raises(grpc.RpcError) as info:
            abort(b"NOT_FOUND:no such thing", timeout=10)
        error: grpc.Call = info.value  # type: ignore[assignment]
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "no such thing"
        assert request_id(error)


def test_known_unary_calls_keep_their_deadlines(stack: Stack) -> None:
    sleep = unary(stack, "/narun.test.SlowProbe/Sleep")
    assert sleep(b"0", timeout=10) == b"slept"  # learns Sleep
    for timeout in (10.0, 0.3):  # the route's timeout, then the client's
        with pytest.raises(grpc.RpcError) as info:
            sleep(b"3", timeout=timeout)
        error: grpc.Call = info.value  # type: ignore[assignment]
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("probe", PROBES)
def test_no_message_to_a_known_unary_method_is_unimplemented(stack: Stack, probe: str) -> None:
    learn(stack, probe)
    call = stack.channel.stream_stream(f"/{probe}/Echo", None, None)
    responses: Any = call(iter([]), timeout=10)
    with pytest.raises(grpc.RpcError):
        next(responses)
    assert responses.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "exactly one request message" in (responses.details() or "")


@pytest.mark.parametrize("probe", PROBES)
def test_streaming_methods_still_stream_next_to_known_unary_ones(stack: Stack, probe: str) -> None:
    learn(stack, probe)
    for _ in range(2):
        responses = stack.channel.unary_stream(f"/{probe}/Ticks", None, None)(b"3", timeout=10)
        assert [m.split(b":")[0] for m in responses] == [b"0", b"1", b"2"]
        assert dict(responses.initial_metadata())["kind"] == "ticks"
        bidi = stack.channel.stream_stream(f"/{probe}/Bidi", None, None)
        sent = [b"a", b"b", b"c"]
        assert list(bidi(iter(sent), timeout=10)) == [b"echo:" + m for m in sent]
