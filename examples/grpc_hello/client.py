"""Call ``hello.v1.Greeter/SayHello`` through the gateway and print the reply as JSON.

    python -m examples.grpc_hello.client --target localhost:8081 --name "gRPC User"

prints ``{"message": "Hello, gRPC User!"}``. A gRPC error prints ``CODE: details`` on
stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc

from examples.grpc_hello import hello_pb2, hello_pb2_grpc


def say_hello(target: str, name: str, *, timeout: float = 10.0) -> str:
    """One ``SayHello`` call over a plaintext channel; returns the reply's message."""
    with grpc.insecure_channel(target) as channel:
        stub = hello_pb2_grpc.GreeterStub(channel)
        reply = stub.SayHello(hello_pb2.SayHelloRequest(name=name), timeout=timeout)
    message: str = reply.message
    return message


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:8081", help="gateway gRPC address")
    parser.add_argument("--name", default="gRPC User")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    args = parser.parse_args(argv)
    try:
        message = say_hello(args.target, args.name, timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(json.dumps({"message": message}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
