"""Self-registering routes end to end: real nats-server, gateway, consumers, httpx.

A gateway whose config only says where services may claim routes (``dynamic_routes``)
learns a consumer's ``--route`` within seconds, keeps it while any instance serves it,
drops it when the last one stops, and never lets a claim take a static route, a path
outside its rules, or (on a secured server) come from a user without the permission.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from narun.transport.server import NATSServer
from tests.support import Processes, free_port, unique_service, write_config

APP = "tests.support.apps:asgi_app"
ECHO_RULE = [{"path_prefix": "/echo/"}]


def wait_until(check: Callable[[], bool], timeout: float = 15) -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout`` (not a hang)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


def routes_ls(config: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "narun", "routes", "ls", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_a_claimed_route_lives_while_any_instance_serves_it(
    own_nats_server: NATSServer, logs: Path
) -> None:
    service = unique_service("claim")
    with Processes(logs, own_nats_server.url) as procs:
        gateway, url = procs.gateway([], dynamic_routes=ECHO_RULE)
        assert status(f"{url}/echo/x") == 404  # nobody claimed it yet
        first = procs.consumer(APP, service, "--route", "/echo/", "--methods", "GET,POST")
        wait_until(lambda: status(f"{url}/echo/x") == 200)
        answer = httpx.post(f"{url}/echo/hi", content=b"body", timeout=10)
        assert answer.status_code == 200
        assert answer.json()["path"] == "/echo/hi"
        assert status(f"{url}/echo/x") == 200
        assert httpx.delete(f"{url}/echo/x", timeout=10).status_code == 405  # not claimed

        procs.consumer(APP, service, "--route", "/echo/", instances_before=1)
        procs.procs.remove(first)
        assert first.stop() == 0  # the first of two leaves: the route stays
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert status(f"{url}/echo/x") == 200
            time.sleep(0.1)

        for proc in procs.procs[1:]:
            assert proc.stop() == 0  # the last one: the route goes
        procs.procs[1:] = []
        wait_until(lambda: status(f"{url}/echo/x") == 404, timeout=10)
        assert "route claimed: http /echo/" in gateway.output()


def test_claims_on_static_routes_or_outside_the_rules_are_refused(
    own_nats_server: NATSServer, logs: Path
) -> None:
    owner, intruder = unique_service("owner"), unique_service("intruder")
    metrics_port = free_port()
    settings: dict[str, Any] = {
        "dynamic_routes": [{"path_prefix": "/echo/claims/"}],
        "metrics_addr": f"127.0.0.1:{metrics_port}",
    }
    static = [{"path": "/echo/", "methods": ["GET"], "service": owner}]
    with Processes(logs, own_nats_server.url) as procs:
        gateway, url = procs.gateway(static, **settings)
        procs.consumer(APP, intruder, "--route", "/echo/", "--route", "/elsewhere/")

        def refused_twice() -> bool:
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            return (
                len(re.findall(r"narun_gateway_route_claims_refused_total\{.*\} 1\.0", metrics))
                == 2
            )

        wait_until(refused_twice)
        assert status(f"{url}/echo/x") == 503  # still the static route (its owner is not running)
        assert status(f"{url}/elsewhere/x") == 404
        out = gateway.output()
        assert f"route claim refused: service '{intruder}' http /echo/: static_route" in out
        assert f"route claim refused: service '{intruder}' http /elsewhere/: outside_rules" in out

        config = write_config(logs, {"nats_url": own_nats_server.url, "routes": static, **settings})
        table = routes_ls(config)
        assert table["routes"] == [
            {
                "kind": "http",
                "route": "/echo/",
                "methods": ["GET"],
                "service": owner,
                "source": "static",
                "instances": 0,
            }
        ]
        assert {(r["route"], r["service"], r["reason"]) for r in table["refused"]} == {
            ("/echo/", intruder, "static_route"),
            ("/elsewhere/", intruder, "outside_rules"),
        }


def test_a_user_without_the_claim_permission_cannot_add_a_route(logs: Path) -> None:
    # Only "trusted" may publish route claims (and only for its own service); "mallory"
    # may serve, but the server refuses the claims it publishes.
    users = """
    authorization {
      users: [
        { user: gateway, password: gw }
        { user: trusted, password: tr, permissions: {
            publish: { allow: ["narun.routes.claim.good", "_INBOX.>", "$SRV.>"] } } }
        { user: mallory, password: ma, permissions: {
            publish: { deny: ["narun.routes.claim.>"] } } }
      ]
    }
    """
    with NATSServer(extra_config=users, log_file=logs / "nats-claims.log") as server:
        port = server.url.rsplit(":", 1)[1]

        def as_user(user: str, password: str) -> str:
            return f"nats://{user}:{password}@127.0.0.1:{port}"

        with Processes(logs, as_user("gateway", "gw")) as procs:
            _, url = procs.gateway([], dynamic_routes=ECHO_RULE)
            procs.nats_url = as_user("mallory", "ma")
            bad = procs.consumer(APP, "bad", "--route", "/echo/")
            time.sleep(3)  # several announcement rounds: all refused by the server
            assert status(f"{url}/echo/x") == 404
            assert 'permissions violation for publish to "narun.routes.claim.bad"' in bad.output()

            procs.nats_url = as_user("trusted", "tr")
            procs.consumer(APP, "good", "--route", "/echo/")
            wait_until(lambda: status(f"{url}/echo/x") == 200)


def test_a_claimed_grpc_service_is_called_through_the_gateway(
    own_nats_server: NATSServer, logs: Path
) -> None:
    from examples.grpc_hello import hello_pb2, hello_pb2_grpc
    from tests.support import wait_for_port

    service, grpc_port = unique_service("grpcclaim"), free_port()
    with Processes(logs, own_nats_server.url) as procs:
        gateway, _ = procs.gateway(
            [],
            grpc_addr=f"127.0.0.1:{grpc_port}",
            dynamic_routes=[{"grpc_package": "hello.v1"}],
        )
        wait_for_port(grpc_port, gateway)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = hello_pb2_grpc.GreeterStub(channel)
            request = hello_pb2.SayHelloRequest(name="claims")
            with pytest.raises(grpc.RpcError) as info:
                stub.SayHello(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # not routed yet
            procs.consumer(
                "tests.support.grpc_apps:register",
                service,
                "--interface",
                "grpc",
                "--grpc-route",
                "hello.v1.Greeter",
                "--grpc-route",
                "narun.test.AsyncProbe",  # outside the grpc_package: refused
            )

            def answered() -> bool:
                try:
                    reply = stub.SayHello(request, timeout=10)
                    return bool(reply.message == "Hello, claims!")
                except grpc.RpcError:
                    return False

            wait_until(answered)
        out = gateway.output()
        assert "route claim refused: service" in out
        assert "grpc narun.test.AsyncProbe: outside_rules" in out
