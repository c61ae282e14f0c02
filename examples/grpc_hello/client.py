"""Call ``hello.v1.Greeter/SayHello`` through the gateway and print the reply as JSON.

    python -m examples.grpc_hello.client --target localhost:8081 --name "gRPC User"

prints ``{"message": "Hello, gRPC User!"}``. ``--many 5 --interval-ms 500`` calls the
server-streaming ``SayHelloMany`` and prints each reply as it arrives; ``--chat a b c``
sends those names on one bidirectional ``Chat`` call, one at a time, each after the
previous answer. A gRPC error prints ``CODE: details`` on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
from collections.abc import Iterator

import grpc

from examples.grpc_hello import hello_pb2, hello_pb2_grpc


def say_hello(target: str, name: str, *, timeout: float = 10.0) -> str:
    """One ``SayHello`` call over a plaintext channel; returns the reply's message."""
    with grpc.insecure_channel(target) as channel:
        stub = hello_pb2_grpc.GreeterStub(channel)
        reply = stub.SayHello(hello_pb2.SayHelloRequest(name=name), timeout=timeout)
    message: str = reply.message
    return message


def say_hello_many(
    target: str, name: str, count: int, interval_ms: int, *, timeout: float = 60.0
) -> Iterator[str]:
    """The replies of one ``SayHelloMany`` call, as they arrive."""
    with grpc.insecure_channel(target) as channel:
        stub = hello_pb2_grpc.GreeterStub(channel)
        request = hello_pb2.SayHelloManyRequest(name=name, count=count, interval_ms=interval_ms)
        for reply in stub.SayHelloMany(request, timeout=timeout):
            yield str(reply.message)


def chat(target: str, names: list[str], *, timeout: float = 60.0) -> Iterator[str]:
    """One ``Chat`` call: each name is sent once the previous one was answered."""
    answered: queue.Queue[None] = queue.Queue()

    def requests() -> Iterator[hello_pb2.SayHelloRequest]:
        for i, name in enumerate(names):
            if i:
                answered.get()
            yield hello_pb2.SayHelloRequest(name=name)

    with grpc.insecure_channel(target) as channel:
        stub = hello_pb2_grpc.GreeterStub(channel)
        for reply in stub.Chat(requests(), timeout=timeout):
            yield str(reply.message)
            answered.put(None)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:8081", help="gateway gRPC address")
    parser.add_argument("--name", default="gRPC User")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    parser.add_argument("--many", type=int, help="SayHelloMany: how many replies")
    parser.add_argument("--interval-ms", type=int, default=500, help="SayHelloMany interval")
    parser.add_argument("--chat", nargs="+", metavar="NAME", help="Chat with these names")
    args = parser.parse_args(argv)
    try:
        if args.many is not None:
            replies = say_hello_many(
                args.target, args.name, args.many, args.interval_ms, timeout=args.timeout
            )
        elif args.chat:
            replies = chat(args.target, args.chat, timeout=args.timeout)
        else:
            replies = iter([say_hello(args.target, args.name, timeout=args.timeout)])
        for message in replies:
            print(json.dumps({"message": message}), flush=True)
    except grpc.RpcError as exc:
        print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
