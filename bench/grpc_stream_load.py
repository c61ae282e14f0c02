"""``python -m bench.grpc_stream_load TARGET MESSAGES``: one bidi ``Chat`` stream, measured.

Two phases on one ``grpc.aio`` channel, on uvloop:

- **throughput**: one ``Chat`` call with MESSAGES requests written as fast as flow
  control allows while a reader takes the answers; messages/s = answers / elapsed;
- **per-message delay**: one ``Chat`` call, 1,000 ping-pongs (send a name, wait for its
  answer): each round trip is the delay of a message there and its answer back.

Prints one JSON line: ``messages``, ``seconds``, ``msgs_per_s``, ``rtt_p50_us``,
``rtt_p99_us``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc.aio
import uvloop

from examples.grpc_hello import hello_pb2, hello_pb2_grpc

PINGS = 1000


async def run(target: str, messages: int) -> dict[str, float]:
    """Drive ``target`` and return the summary."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = hello_pb2_grpc.GreeterStub(channel)
        await stub.SayHello(hello_pb2.SayHelloRequest(name="warm"), timeout=10)
        request = hello_pb2.SayHelloRequest(name="gRPC User")

        call = stub.Chat(timeout=600)
        started = time.perf_counter()

        async def write() -> None:
            for _ in range(messages):
                await call.write(request)
            await call.done_writing()

        writer = asyncio.ensure_future(write())
        got = 0
        async for _ in call:
            got += 1
        await writer
        elapsed = time.perf_counter() - started

        rtts: list[float] = []
        ping = stub.Chat(timeout=600)
        for _ in range(PINGS):
            t0 = time.perf_counter()
            await ping.write(request)
            await ping.read()
            rtts.append(time.perf_counter() - t0)
        await ping.done_writing()
        await ping.read()  # the status
    rtts.sort()
    return {
        "messages": got,
        "seconds": elapsed,
        "msgs_per_s": got / elapsed,
        "rtt_p50_us": rtts[len(rtts) // 2] * 1e6,
        "rtt_p99_us": rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))] * 1e6,
    }


if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(run(sys.argv[1], int(sys.argv[2])))))
