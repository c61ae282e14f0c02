"""``hello.v1.Greeter`` as an async grpcio servicer, served over NATS by narun.

Serve it with::

    narun serve examples.grpc_hello.server:register --service greeter-service --interface grpc

The same servicer works on a plain ``grpc.aio.server()``: narun only changes what it is
registered on.
"""

from __future__ import annotations

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


def register(target: GRPCTarget) -> None:
    """Register the Greeter on ``target`` (what ``narun serve --interface grpc`` calls)."""
    hello_pb2_grpc.add_GreeterServicer_to_server(Greeter(), target)
