"""Gateway lifecycle: graceful SIGTERM, NATS outages, bad configs at start."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from narun.transport.server import NATSServer
from tests.support import (
    ROOT,
    Proc,
    free_port,
    start_consumer,
    start_gateway,
    unique_service,
    write_config,
)

SLOW = {"path": "/slow", "methods": ["GET"], "service": ""}


async def test_gateway_sigterm_finishes_in_flight_then_exits_0(logs: Path, nats_url: str) -> None:
    service = unique_service("gw-drain")
    consumer = start_consumer(logs, nats_url, "tests.support.apps:asgi_app", service)
    gateway, url = start_gateway(logs, nats_url, [{**SLOW, "service": service}])
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            pending = asyncio.create_task(client.get("/slow?seconds=1.5"))
            await asyncio.sleep(0.5)
            gateway.signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            # New connections are refused while the in-flight request finishes.
            async with httpx.AsyncClient(base_url=url, timeout=2) as fresh:
                try:
                    await fresh.get("/slow?seconds=0")
                    refused = False
                except httpx.ConnectError:
                    refused = True
            response = await pending
        assert refused
        assert response.status_code == 200
        assert response.text == "slept"
        assert gateway.wait() == 0, gateway.output()
    finally:
        gateway.stop()
        assert consumer.stop() == 0


async def test_nats_outage_answers_503_fast_and_recovers(
    logs: Path, own_nats_server: NATSServer
) -> None:
    url_nats = own_nats_server.url
    service = unique_service("outage")
    consumer = start_consumer(logs, url_nats, "tests.support.apps:asgi_app", service)
    gateway, url = start_gateway(
        logs, url_nats, [{"path": "/echo/", "methods": ["GET"], "service": service}]
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/echo/1")).status_code == 200
            own_nats_server.stop()
            await asyncio.sleep(0.5)
            for _ in range(5):
                started = time.monotonic()
                response = await client.get("/echo/2")
                assert response.status_code == 503
                assert time.monotonic() - started < 0.5  # not a wait for the 5 s timeout
            own_nats_server.start()
            deadline = time.monotonic() + 15
            status = 0
            while time.monotonic() < deadline:
                status = (await client.get("/echo/3")).status_code
                if status == 200:
                    break
                await asyncio.sleep(0.2)
            assert status == 200
    finally:
        assert gateway.stop() == 0, gateway.output()
        assert consumer.stop() == 0, consumer.output()


@pytest.mark.parametrize("command", ["gateway", "dev"])
def test_bad_config_fails_at_start_naming_the_key(command: str, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {"routes": [{"path": "/x", "methods": ["GET"], "service": "bad.name"}], "colour": 1},
    )
    proc = Proc([command, "-c", str(path)], tmp_path / "gw.log")
    code = proc.wait(timeout=20)
    out = proc.output()
    assert code != 0
    assert "routes[0].service" in out
    assert "colour" in out
    assert "Traceback" not in out


def test_unreachable_nats_fails_at_start_with_a_clear_message(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "nats_url": "nats://127.0.0.1:1",
            "metrics_addr": "",
            "routes": [{"path": "/x", "methods": ["GET"], "service": "x"}],
        },
    )
    proc = Proc(["gateway", "-c", str(path)], tmp_path / "gw.log")
    code = proc.wait(timeout=30)
    out = proc.output()
    assert code != 0
    assert "NATS" in out
    assert "Traceback" not in out
    assert sys.executable  # the command ran with this interpreter
    assert ROOT.exists()


def test_dev_sigterm_while_starting_stops_what_it_started(tmp_path: Path) -> None:
    """A SIGTERM before `narun dev` forwards signals still stops its nats-server."""
    nats_port, http_port = free_port(), free_port()
    path = write_config(
        tmp_path,
        {
            "nats_url": f"nats://127.0.0.1:{nats_port}",
            "server_addr": f"127.0.0.1:{http_port}",
            "metrics_addr": "",
            "routes": [{"path": "/x", "methods": ["GET"], "service": "x"}],
        },
    )
    dev = Proc(
        ["dev", "-c", str(path), "--serve", "x=tests.support.apps:asgi_app"], tmp_path / "dev.log"
    )
    try:
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"^nats-server .*\(pid (\d+)\)$", dev.output(), re.M)
            time.sleep(0.01)
        assert found is not None, dev.output()
        nats_pid = int(found.group(1))
        assert "Ctrl-C stops everything" not in dev.output()  # still starting
        dev.signal(signal.SIGTERM)
        assert dev.wait(timeout=60) != 0
        gone_by = time.monotonic() + 10
        while _running(nats_pid) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert not _running(nats_pid), dev.output()
        assert "stopped." in dev.output()
    finally:
        if dev.alive():
            dev.stop()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
