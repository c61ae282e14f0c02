"""Real processes for tests: gateways and consumers as subprocesses, on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.supervise import Child, SuperviseError

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_counter = itertools.count()


def unique_service(prefix: str = "svc") -> str:
    """A service name no other test uses."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


class Proc:
    """A narun child process whose output goes to a log file shown on failure.

    It shares the test run's process group, so that a Ctrl-C of pytest reaches it too.
    """

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.child = Child.start(
            [sys.executable, "-m", "narun", *args],
            name=f"narun {args[0]}",
            output=log,
            cwd=ROOT,
            env=env,
            own_group=False,
        )

    @property
    def pid(self) -> int:
        return self.child.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.child.running

    def signal(self, sig: signal.Signals) -> None:
        self.child.signal(sig)

    def wait(self, timeout: float = 40) -> int:
        return self.child.wait(timeout)

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time, or if the wait is cut short.

        Interrupted (Ctrl-C, a test timeout's exception) while it drains, it is killed
        before the interruption goes on: nothing is left running.
        """
        try:
            return self.child.stop(grace=40)
        except BaseException:
            self.child.kill()
            raise


@contextlib.contextmanager
def stopped_on_error(proc: Proc) -> Iterator[Proc]:
    """Give ``proc`` to the block; if the block raises anything, stop it before that goes on.

    For the time between starting a process and handing it to whoever stops it (a
    fixture's ``finally``, :class:`~tests.support.stack.Processes`): a readiness wait that
    fails or is interrupted (``KeyboardInterrupt`` included) must not leave it running.
    """
    try:
        yield proc
    except BaseException:
        proc.stop()
        raise


def wait_for_port(port: int, proc: Proc, timeout: float = 20) -> None:
    try:
        proc.child.wait_for_port(port, timeout=timeout)
    except SuperviseError as exc:
        raise RuntimeError(f"{exc}:\n{proc.output()}") from None


def count_instances(
    nats_url: str, service: str, wait: float = 0.3, nats_options: dict[str, Any] | None = None
) -> int:
    """How many instances of ``service`` answer ``$SRV.PING.<service>`` (real NATS).

    ``nats_options``: extra ``nats.connect`` arguments (credentials, TLS).
    """

    async def ping() -> int:
        nc = await nats.connect(nats_url, **(nats_options or {}))
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(f"$SRV.PING.{service}", b"", reply=inbox)
            seen = 0
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except nats.errors.TimeoutError:
                    break
                if msg.data:  # not the server's empty "no responders" status message
                    seen += 1
            return seen
        finally:
            await nc.close()

    # A thread of its own, so that this works from sync code and from inside async tests.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ping()).result()


def start_consumer(
    tmp: Path,
    nats_url: str,
    app_ref: str,
    service: str,
    *extra: str,
    instances_before: int = 0,
    nats_options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start ``narun serve`` and wait until the new instance answers PING.

    ``nats_options`` are how this test process itself connects to ask (see
    :func:`count_instances`); ``env`` is added to the consumer's environment.
    """
    log = tmp / f"consumer-{service}-{next(_counter)}.log"
    proc = Proc(
        ["serve", app_ref, "--service", service, "--nats-url", nats_url, *extra], log, env=env
    )
    with stopped_on_error(proc):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"consumer exited early:\n{proc.output()}")
            if count_instances(nats_url, service, 0.1, nats_options) > instances_before:
                return proc
            time.sleep(0.05)
        raise RuntimeError(f"consumer {service} did not register:\n{proc.output()}")


def write_config(tmp: Path, config: dict[str, Any]) -> Path:
    path = tmp / f"gateway-{next(_counter)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_gateway(
    tmp: Path,
    nats_url: str,
    routes: list[dict[str, Any]],
    *,
    env: dict[str, str] | None = None,
    **settings: Any,
) -> tuple[Proc, str]:
    """Start ``narun gateway`` on a free port; return the process and its base URL.

    ``settings`` are more config keys; ``env`` is added to the gateway's environment.
    """
    port = free_port()
    config: dict[str, Any] = {
        "nats_url": nats_url,
        "server_addr": f"127.0.0.1:{port}",
        "metrics_addr": "",
        "request_timeout_seconds": 5,
        "routes": routes,
        **settings,
    }
    path = write_config(tmp, config)
    proc = Proc(["gateway", "-c", str(path)], tmp / f"{path.stem}.log", env=env)
    with stopped_on_error(proc):
        wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def gateway_to_responder(
    tmp: Path,
    nats_url: str,
    nc: Client,
    responder: Callable[[Msg], Awaitable[None]],
    *,
    methods: Sequence[str] = ("POST",),
    **settings: Any,
) -> AsyncIterator[str]:
    """A gateway routing ``/x`` to a hand-made backend; yield the gateway's base URL.

    ``responder`` answers the requests of a fresh service, subscribed on ``nc`` in the
    queue group ``q`` (a Go-shaped or misbehaving consumer). ``settings`` are more gateway
    config keys. When the block ends normally, the gateway must exit 0 on its stop.
    """
    service = unique_service("hand")
    await nc.subscribe(service, queue="q", cb=responder)
    await nc.flush()
    route = {"path": "/x", "methods": list(methods), "service": service}
    gateway, url = start_gateway(tmp, nats_url, [route], **settings)
    with stopped_on_error(gateway):
        yield url
    assert gateway.stop() == 0, gateway.output()
