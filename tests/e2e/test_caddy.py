"""Caddy as the front door: HTTPS client -> real Caddy -> real gateway -> NATS -> consumer.

Caddy terminates TLS with its own local CA (``tls internal``), serves the static site and
proxies ``/api/*`` (prefix stripped) to the gateway, which trusts Caddy's address. The
client connects from 127.0.0.2, so the address the consumer reports can only be right
if it travelled in X-Forwarded-For.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from narun.config.gateway import load_config
from narun.supervise import Child
from tests.support import ROOT, Processes, free_port, unique_service

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(
    CADDY is None, reason="the caddy binary is not on PATH (.ci/run installs it with apt-get)"
)
SITE = ROOT / "deploy" / "caddy" / "site"


def caddyfile(https_port: int, http_port: int, gateway_port: int) -> str:
    """The shipped Caddyfile's shape, made local: ports, no admin API, no trust store."""
    return f"""
{{
	admin off
	local_certs
	skip_install_trust
	http_port {http_port}
	https_port {https_port}
	auto_https disable_redirects
}}

https://localhost:{https_port} {{
	bind 127.0.0.1
	tls internal
	handle_path /api/* {{
		reverse_proxy 127.0.0.1:{gateway_port} {{
			# Like nginx's default: the gateway gets its own address as Host, so the
			# original host reaches the consumer only through X-Forwarded-Host.
			header_up Host {{upstream_hostport}}
		}}
	}}
	handle {{
		root * {SITE}
		file_server
	}}
}}
"""


def caddy_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


@dataclass
class Front:
    url: str
    root_ca: Path


def wait_ready(caddy: Child, port: int, root_ca: Path, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (code := caddy.returncode) is not None:
            raise RuntimeError(f"caddy exited with {code}:\n{log.read_text()}")
        if root_ca.exists():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"caddy not ready on {port}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def front(nats_url: str, logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    service = unique_service("caddy")
    with Processes(logs, nats_url) as procs:
        procs.consumer("tests.support.apps:asgi_app", service)
        _, gateway_url = procs.gateway(
            [{"path": "/echo/", "methods": ["GET", "POST"], "service": service}],
            trusted_proxies=["127.0.0.1"],
        )
        home = tmp_path_factory.mktemp("caddy")
        https_port, http_port = free_port(), free_port()
        config = home / "Caddyfile"
        config.write_text(caddyfile(https_port, http_port, int(gateway_url.rsplit(":", 1)[1])))
        log = logs / "caddy.log"
        assert CADDY is not None
        caddy = Child.start(
            [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
            name="caddy",
            output=log,
            env=caddy_env(home),
            own_group=False,
        )
        root_ca = home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        try:
            wait_ready(caddy, https_port, root_ca, log)
            yield Front(f"https://localhost:{https_port}", root_ca)
        finally:
            caddy.stop(grace=10)


@pytest.fixture
def client(front: Front) -> Iterator[httpx.Client]:
    """An HTTPS client on 127.0.0.2 that trusts Caddy's local CA (and nothing else)."""
    ctx = ssl.create_default_context(cafile=str(front.root_ca))
    transport = httpx.HTTPTransport(verify=ctx, local_address="127.0.0.2")
    with httpx.Client(base_url=front.url, transport=transport, timeout=10) as c:
        yield c


def test_static_site_is_served_over_tls(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == (SITE / "index.html").read_text()
    assert response.headers["content-type"].startswith("text/html")


def test_consumer_sees_original_client_host_and_scheme(client: httpx.Client, front: Front) -> None:
    response = client.post(
        "/api/echo/through-caddy?x=1",
        content=b"hello",
        # A client cannot pass itself off as someone else: Caddy trusts no proxy and
        # replaces these; the gateway believes only what Caddy says.
        headers={"x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "gopher"},
    )
    assert response.status_code == 200, response.text
    doc = response.json()
    headers = dict(doc["headers"])
    assert doc["client"] == "127.0.0.2"
    assert doc["scheme"] == "https"
    assert headers["host"] == front.url.removeprefix("https://")
    assert doc["path"] == "/echo/through-caddy"  # /api stripped by handle_path
    assert doc["query"] == "x=1"
    assert headers["x-forwarded-for"] == "127.0.0.2, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"


def test_unrouted_api_path_is_the_gateway_404(client: httpx.Client) -> None:
    response = client.get("/api/not-routed")
    assert response.status_code == 404
    assert response.text == "Not Found\n"


def test_shipped_caddyfile_and_gateway_config_are_valid(tmp_path: Path) -> None:
    assert CADDY is not None
    result = subprocess.run(
        [
            CADDY,
            "validate",
            "--config",
            str(ROOT / "deploy" / "caddy" / "Caddyfile"),
            "--adapter",
            "caddyfile",
        ],
        env={**caddy_env(tmp_path), "NARUN_SITE_ROOT": str(SITE)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_config(ROOT / "deploy" / "gateway.yaml", env={})
    assert "127.0.0.1" in config.trusted_proxies
