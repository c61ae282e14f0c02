"""``narun gateway --workers 2``: two processes share the port, both serve, both drain."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import (
    Proc,
    free_port,
    start_consumer,
    unique_service,
    wait_for_port,
    write_config,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def sockets(pid: int) -> int:
    """Open sockets of ``pid``: listening ones, NATS, and each accepted connection."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def exists(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts)."""
    return os.path.exists(f"/proc/{pid}")


def start_workers(logs: Path, nats_url: str, service: str, workers: int) -> tuple[Proc, str]:
    port = free_port()
    path = write_config(
        logs,
        {
            "nats_url": nats_url,
            "server_addr": f"127.0.0.1:{port}",
            "metrics_addr": f"127.0.0.1:{free_port()}",
            "request_timeout_seconds": 10,
            "routes": [{"path": "/", "methods": ["GET"], "service": service}],
        },
    )
    proc = Proc(["gateway", "-c", str(path), "--workers", str(workers)], logs / f"{path.stem}.log")
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


async def test_two_workers_both_serve_and_drain_on_sigterm(logs: Path, nats_url: str) -> None:
    service = unique_service("workers")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", service)
    gateway, url = start_workers(logs, nats_url, service, 2)
    try:
        workers: list[int] = []
        for _ in range(100):  # both listening
            workers = children(gateway.pid)
            if len(workers) == 2 and all(sockets(pid) >= 2 for pid in workers):
                break
            await asyncio.sleep(0.1)
        assert len(workers) == 2, gateway.output()
        idle = {pid: sockets(pid) for pid in workers}

        # 32 clients, each its own connection (source port): the kernel spreads them.
        clients = [httpx.AsyncClient(base_url=url, timeout=10) for _ in range(32)]
        try:
            answers = await asyncio.gather(*(c.get(f"/echo/{i}") for i, c in enumerate(clients)))
            assert {a.status_code for a in answers} == {200}
            # Every connection is still open: each worker holds some of them.
            busy = {pid: sockets(pid) for pid in workers}
            assert all(busy[pid] > idle[pid] for pid in workers), (idle, busy)

            # Slow requests in flight on every connection, then SIGTERM to the supervisor:
            # each worker stops accepting but finishes what it has, then all exit 0.
            pending = [asyncio.create_task(c.get("/slow?seconds=1.5")) for c in clients]
            await asyncio.sleep(0.5)
            gateway.signal(signal.SIGTERM)
            slow = await asyncio.gather(*pending)
        finally:
            for client in clients:
                await client.aclose()
        assert [r.status_code for r in slow] == [200] * 32
        assert {r.text for r in slow} == {"slept"}
        assert gateway.wait() == 0, gateway.output()
        # The supervisor reaped both before exiting.
        assert not any(exists(pid) for pid in workers)
    finally:
        gateway.stop()
        assert consumer.stop() == 0


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "nats_url": "nats://127.0.0.1:1",
            "server_addr": f"127.0.0.1:{free_port()}",
            "metrics_addr": "",
            "routes": [{"path": "/x", "methods": ["GET"], "service": "x"}],
        },
    )
    proc = Proc(["gateway", "-c", str(path), "--workers", "2"], tmp_path / "gw.log")
    code = proc.wait(timeout=60)
    out = proc.output()
    assert code == 1, out
    assert "NATS" in out
    assert "Traceback" not in out
