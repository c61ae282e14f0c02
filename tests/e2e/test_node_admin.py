"""``narun admin`` in a real browser, and the node's ``/discovery``, end to end.

A JetStream nats-server, one ``narun node``, ``narun admin``, and Debian's headless
Chromium driven over the DevTools protocol: the test reads what a person sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from narun.transport.server import NATSServer
from tests.e2e.test_node import FAST, instances, live_nodes, narun, ok, wait_until
from tests.support import Proc, Processes, free_port, wait_for_port
from tests.support.browser import Browser

TOKEN = "admin-" + os.urandom(12).hex()
TICKER = """\
import itertools, sys, time
for n in itertools.count():
    print("tick", n, flush=True)
    if n % 5 == 0:
        print("tock on stderr", n, file=sys.stderr, flush=True)
    time.sleep(0.3)
"""
METRICS_APP = """\
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"workload_test_metric 1.0\\n" if self.path == "/m" else b""
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("metrics up", flush=True)
server.serve_forever()
"""


@dataclass
class Stack:
    url: str
    tmp: Path
    admin_url: str
    metrics_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("admin")
    with (
        NATSServer(extra_config=f'jetstream {{ store_dir: "{tmp / "js"}" }}') as server,
        Processes(tmp, server.url, check=False) as procs,
    ):
        metrics_port, admin_port = free_port(), free_port()
        node = procs.add(Proc(
            ["node", "--node-id", "a1", "--data-dir", str(tmp / "a1"), "--nats-url", server.url,
             "--metrics-addr", f"127.0.0.1:{metrics_port}", *FAST],
            tmp / "node.log",
        ))  # fmt: skip
        wait_until(lambda: "a1" in live_nodes(server.url), 20, "node a1 up", node)
        admin = procs.add(
            Proc(
                ["admin", "--addr", f"127.0.0.1:{admin_port}", "--nats-url", server.url],
                tmp / "admin.log",
                env={"NARUN_ADMIN_TOKEN": TOKEN},
            )
        )
        wait_for_port(admin_port, admin)
        yield Stack(
            server.url,
            tmp,
            f"http://127.0.0.1:{admin_port}",
            f"http://127.0.0.1:{metrics_port}",
        )


def _deploy(stack: Stack, spec: dict[str, Any]) -> None:
    path = stack.tmp / f"{spec['name']}.yaml"
    path.write_text(json.dumps(spec))
    ok(narun(stack.url, "deploy", "-f", str(path)))


def _running(stack: Stack, app: str) -> list[dict[str, Any]]:
    return [i for i in instances(stack.url, app) if i["status"] == "running"]


async def test_the_admin_page_shows_instances_streams_logs_and_restarts(stack: Stack) -> None:
    app = "ticker"
    spec = {
        "name": app,
        "command": [sys.executable, "-c", TICKER],
        "ready_seconds": 0.5,
        "stop_grace_seconds": 2,
        "memoryMB": 128,
    }
    await asyncio.to_thread(_deploy, stack, spec)
    [first] = await asyncio.to_thread(
        wait_until, lambda: _running(stack, app), 30, "ticker running"
    )
    async with Browser(stack.tmp) as page:
        await page.goto(stack.admin_url + "/")
        await page.evaluate("window.__sameDocument = 'yes'")
        row = "#instances tr[data-instance='ticker-0']"
        shown = f"(document.querySelector(\"{row}\") || {{innerText: ''}}).innerText"
        await page.wait_for(f"{shown}.includes('running')", what="the instance row says running")
        seen = await page.text(row)
        assert "ticker" in seen
        assert "a1" in seen
        assert "MiB" in seen  # its memory, from its cgroup
        assert str(first["pid"]) in seen
        nodes = await page.text("#nodes")
        assert "a1" in nodes
        assert "running" in nodes

        # live logs: lines keep arriving in the same document, without a reload
        await page.click("button[data-logs='ticker-0']")
        await page.wait_for(
            "document.getElementById('logs').innerText.includes('tick')", what="log lines"
        )
        before = len((await page.text("#logs")).splitlines())
        await asyncio.sleep(2.5)
        after_text = await page.text("#logs")
        assert len(after_text.splitlines()) > before + 3, after_text[-500:]
        assert "! tock on stderr" in after_text
        assert await page.evaluate("window.__sameDocument") == "yes"
        assert await page.text("#logs-title") == "Logs of ticker-0"
        shot = os.environ.get("NARUN_ADMIN_SCREENSHOT")
        png = await page.screenshot(Path(shot) if shot else stack.tmp / "admin.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")

        # restart needs the admin credential
        await page.evaluate("document.getElementById('token').value = 'wrong-token-value'")
        await page.click("button[data-restart='ticker-0']")
        await page.wait_for(
            "document.getElementById('message').innerText.includes('wrong or missing admin token')",
            what="a wrong token is refused",
        )
        await page.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)}")
        await page.click("button[data-restart='ticker-0']")
        await page.wait_for(
            "document.getElementById('message').innerText === 'restart ticker-0'",
            what="restart accepted",
        )
        again = await asyncio.to_thread(
            wait_until,
            lambda: [i for i in _running(stack, app) if i["run_id"] != first["run_id"]],
            30,
            "a new run after restart",
        )
        assert again[0]["restarts"] == 0  # asked for, not a crash
        await page.wait_for(
            f"document.querySelector(\"{row}\").innerText.includes('{again[0]['pid']}')",
            what="the page shows the new run",
        )
        await page.click("button[data-stop='ticker-0']")
        await page.wait_for(
            f"document.querySelector(\"{row}\").innerText.includes('stopped')",
            what="the page shows the instance stopped",
        )
    assert not await asyncio.to_thread(_running, stack, app)
    # a stopped instance stays stopped until a restart or a new version
    await asyncio.to_thread(_deploy, stack, {**spec, "env": {"V": "2"}})
    await asyncio.to_thread(wait_until, lambda: _running(stack, app), 30, "the new version runs")
    await asyncio.to_thread(ok, narun(stack.url, "apps", "rm", app))


def test_control_without_the_token_is_refused(stack: Stack) -> None:
    body = {"node": "a1", "instance_id": "x-0", "action": "stop"}
    r = httpx.post(f"{stack.admin_url}/api/control", json=body)
    assert r.status_code == 401
    assert r.json() == {"error": "wrong or missing admin token"}
    r = httpx.post(
        f"{stack.admin_url}/api/control",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 409
    assert r.json() == {"error": "no such instance on this node"}
    assert httpx.get(f"{stack.admin_url}/api/logs").status_code == 400


@pytest.mark.parametrize("nonet", [False, True], ids=["host-network", "nonet"])
def test_discovery_lists_instance_metrics_as_go_does(stack: Stack, nonet: bool) -> None:
    app = f"metrics-{'nonet' if nonet else 'host'}"
    port = free_port()
    spec: dict[str, Any] = {
        "name": app,
        "tag": "v7",
        "command": [sys.executable, "-c", METRICS_APP, str(port)],
        "ready_seconds": 0.5,
        "stop_grace_seconds": 2,
        "metrics": {"port": port, "path": "/m"},
    }
    if nonet:
        spec["nonet"] = {}
    _deploy(stack, spec)
    wait_until(lambda: _running(stack, app), 30, f"{app} running")

    def entry() -> dict[str, Any] | None:
        doc = httpx.get(f"{stack.metrics_url}/discovery").json()
        return next((d for d in doc if d["labels"]["narun_app"] == app), None)

    found = wait_until(entry, 10, "a discovery entry")
    assert found["labels"] == {
        "job": "narun-workload",
        "narun_app": app,
        "narun_instance_id": f"{app}-0",
        "narun_node_id": "a1",
        "narun_tag": "v7",
        "__metrics_path__": "/m",
    }
    [target] = found["targets"]
    host, _, target_port = target.rpartition(":")
    assert host == "127.0.0.1"
    assert (int(target_port) != port) is nonet  # nonet: relayed to a host port

    def scrape() -> str | None:  # the app may still be binding its port
        try:
            return httpx.get(f"http://{target}/m", timeout=5).text
        except httpx.HTTPError:
            return None

    assert wait_until(scrape, 15, "a scrape of the target") == "workload_test_metric 1.0\n"
    ok(narun(stack.url, "apps", "rm", app))
    wait_until(lambda: entry() is None, 20, "the entry gone with the app")


def test_the_screenshot_is_a_png_in_the_docs() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "img" / "node-admin.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shutil.which("chromium")  # the page test needs it: apt-get install -y chromium
