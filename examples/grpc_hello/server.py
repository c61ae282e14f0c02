"""``hello.v1.Greeter`` as an async grpcio servicer, served over NATS by narun.

``SayHello`` is unary; ``SayHelloMany`` streams its replies (server streaming) and
``Chat`` answers each name as it arrives (bidirectional): through the gateway each reply
reaches the client as soon as the servicer yields it.

Serve it with::

    narun serve examples.grpc_hello.server:register --service greeter-service --interface grpc

The same servicer works on a plain ``grpc.aio.server()``: narun only changes what it is
registered on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from examples.grpc_hello import hello_pb2, hello_pb2_grpc
from narun.consumer import GRPCTarget


class Greeter(hello_pb2_grpc.GreeterServicer):  # type: ignore[misc]
    """Greets callers by name, as Go narun's ``grpc-hello`` consumer does."""

    async def SayHello(
        self,
        request: hello_pb2.SayHelloRequest,
        context: grpc.aio.ServicerContext[hello_pb2.SayHelloRequest, hello_pb2.SayHelloResponse],
    ) -> hello_pb2.SayHelloResponse:
        """``Hello, <name>!``; an empty name is INVALID_ARGUMENT."""
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Name cannot be empty")
        return hello_pb2.SayHelloResponse(message=f"Hello, {request.name}!")

    async def SayHelloMany(
        self,
        request: hello_pb2.SayHelloManyRequest,
        context: grpc.aio.ServicerContext[
            hello_pb2.SayHelloManyRequest, hello_pb2.SayHelloResponse
        ],
    ) -> AsyncIterator[hello_pb2.SayHelloResponse]:
        """``count`` greetings (1 to 1000), ``interval_ms`` apart (at most 10 s)."""
        if not 1 <= request.count <= 1000 or not 0 <= request.interval_ms <= 10_000:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "count is 1..1000, interval_ms 0..10000"
            )
        for i in range(request.count):
            if i:
                await asyncio.sleep(request.interval_ms / 1000)
            yield hello_pb2.SayHelloResponse(message=f"Hello #{i + 1}, {request.name}!")

    async def Chat(
        self,
        request_iterator: AsyncIterator[hello_pb2.SayHelloRequest],
        context: grpc.aio.ServicerContext[hello_pb2.SayHelloRequest, hello_pb2.SayHelloResponse],
    ) -> AsyncIterator[hello_pb2.SayHelloResponse]:
        """A greeting for each name, as it arrives; an empty name ends the call."""
        async for request in request_iterator:
            if not request.name:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Name cannot be empty")
            yield hello_pb2.SayHelloResponse(message=f"Hello, {request.name}!")


def register(target: GRPCTarget) -> None:
    """Register the Greeter on ``target`` (what ``narun serve --interface grpc`` calls)."""
    hello_pb2_grpc.add_GreeterServicer_to_server(Greeter(), target)
