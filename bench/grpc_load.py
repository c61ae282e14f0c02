"""``python -m bench.grpc_load TARGET CONCURRENCY SECONDS``: a closed-loop gRPC load generator.

wrk speaks no HTTP/2, so the gRPC rows use this: one ``grpc.aio`` channel (one HTTP/2
connection) and CONCURRENCY coroutines that each call ``hello.v1.Greeter/SayHello``
back to back for SECONDS, on uvloop. It prints one JSON line: calls completed, errors,
elapsed seconds, and p50/p99 latency in microseconds. Being Python, it costs far more
CPU per call than wrk does per request, and it shares the two cores with the servers:
compare the gRPC rows with each other, not with the HTTP rows.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import grpc.aio
import uvloop

from examples.grpc_hello import hello_pb2, hello_pb2_grpc


async def run(target: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Drive ``target`` and return the summary."""
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = hello_pb2_grpc.GreeterStub(channel)
        request = hello_pb2.SayHelloRequest(name="gRPC User")
        await stub.SayHello(request, timeout=10)  # connected before the clock starts
        started = time.perf_counter()
        end = started + seconds

        async def caller() -> None:
            nonlocal errors
            clock = time.perf_counter
            while (t0 := clock()) < end:
                try:
                    await stub.SayHello(request, timeout=10)
                except grpc.RpcError:
                    errors += 1
                    continue
                latencies.append(clock() - t0)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "p50_us": pct(0.50) if latencies else 0.0,
        "p99_us": pct(0.99) if latencies else 0.0,
    }


if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    target, concurrency, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(run(target, concurrency, seconds))))
