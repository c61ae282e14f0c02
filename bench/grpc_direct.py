"""``python -m bench.grpc_direct PORT``: the example Greeter on a plain ``grpc.aio`` server.

The no-hop gRPC row: the same servicer narun serves over NATS, on 127.0.0.1:PORT, with
uvloop as the gateway has. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc.aio
import uvloop

from examples.grpc_hello import hello_pb2_grpc
from examples.grpc_hello.server import Greeter


async def serve(port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    server = grpc.aio.server()
    hello_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(int(sys.argv[1])))
