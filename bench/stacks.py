"""The servers under test: how to start each stack on 127.0.0.1 and what to measure in it."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Procs, free_port

__all__ = ["BODY", "EXPECTED", "PATH", "STACKS", "Running", "Stack", "check"]

PATH = "/hello/"
BODY = b'{"name":"NATS User"}'
EXPECTED = b'{"message": "Hello, NATS User!"}'
SERVICE = "bench"
_PY = sys.executable


@dataclass
class Running:
    """A started stack: where to send requests and which processes do the work."""

    url: str
    roles: dict[str, str]
    """Role shown in the report (``gateway``) -> name of the child in :class:`Procs`."""
    rss_roles: tuple[str, ...] = ()
    """Roles whose memory is sampled under load."""
    metrics_url: str | None = None
    """Prometheus endpoint, if the stack has one."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stack:
    """One row group of the report."""

    key: str
    title: str
    start: Callable[[Procs, Path], Running]
    needs: tuple[str, ...] = ()
    """Executables that must be on PATH."""

    def missing(self) -> list[str]:
        """The executables this stack needs that are not installed."""
        return [exe for exe in self.needs if shutil.which(exe) is None]


def _uvicorn(procs: Procs, name: str = "uvicorn") -> int:
    port = free_port()
    proc = procs.start(
        name,
        [
            *(_PY, "-m", "uvicorn", "bench.app:app"),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", "--workers", "1"),
            *("--no-access-log", "--log-level", "warning"),
        ],
    )
    proc.wait_for_port(port, timeout=30)
    return port


def _direct(procs: Procs, workdir: Path) -> Running:
    port = _uvicorn(procs)
    return Running(url=f"http://127.0.0.1:{port}{PATH}", roles={"uvicorn": "uvicorn"})


def _caddy(procs: Procs, workdir: Path) -> Running:
    upstream = _uvicorn(procs)
    port = free_port()
    caddyfile = workdir / "Caddyfile"
    caddyfile.write_text(
        textwrap.dedent(
            f"""\
            {{
            \tadmin off
            \tauto_https off
            }}
            http://127.0.0.1:{port} {{
            \treverse_proxy 127.0.0.1:{upstream}
            }}
            """
        )
    )
    home = str(workdir / "caddy-home")
    env = {"HOME": home, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home}
    argv = ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    proc = procs.start("caddy", argv, env=env)
    proc.wait_for_port(port, timeout=30)
    return Running(
        url=f"http://127.0.0.1:{port}{PATH}", roles={"caddy": "caddy", "uvicorn": "uvicorn"}
    )


def _nginx(procs: Procs, workdir: Path) -> Running:
    upstream = _uvicorn(procs)
    port = free_port()
    # Workers drop to an unprivileged user when started as root: let them in.
    os.chmod(workdir, 0o755)
    d = workdir
    conf = d / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            worker_processes 1;
            pid {d}/nginx.pid;
            error_log {d}/nginx-error.log warn;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
                client_body_temp_path {d}/nginx-body;
                proxy_temp_path {d}/nginx-proxy;
                fastcgi_temp_path {d}/nginx-fastcgi;
                uwsgi_temp_path {d}/nginx-uwsgi;
                scgi_temp_path {d}/nginx-scgi;
                upstream app {{
                    server 127.0.0.1:{upstream};
                    keepalive 64;
                }}
                server {{
                    listen 127.0.0.1:{port};
                    location / {{
                        proxy_pass http://app;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                    }}
                }}
            }}
            """
        )
    )
    argv = ["nginx", "-p", str(d), "-e", str(d / "nginx-error.log"), "-c", str(conf)]
    proc = procs.start("nginx", [*argv, "-g", "daemon off;"])
    proc.wait_for_port(port, timeout=30)
    return Running(
        url=f"http://127.0.0.1:{port}{PATH}", roles={"nginx": "nginx", "uvicorn": "uvicorn"}
    )


def _narun(workers: int) -> Callable[[Procs, Path], Running]:
    def start(procs: Procs, workdir: Path) -> Running:
        from narun.transport.server import find_nats_server

        nats_port = free_port()
        nats = procs.start(
            "nats-server", [find_nats_server(), "-a", "127.0.0.1", "-p", str(nats_port)]
        )
        nats.wait_for_port(nats_port, timeout=30)
        nats_url = f"nats://127.0.0.1:{nats_port}"
        procs.start(
            "consumer",
            [
                *(_PY, "-m", "narun", "serve", "bench.app:app", "--service", SERVICE),
                *("--nats-url", nats_url, "--log-level", "warning"),
            ],
        )
        port = free_port()
        metrics_port = free_port()
        config = workdir / "gateway.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                nats_url: "{nats_url}"
                server_addr: "127.0.0.1:{port}"
                metrics_addr: "127.0.0.1:{metrics_port}"
                request_timeout_seconds: 10
                routes:
                  - path: "{PATH}"
                    methods: ["POST"]
                    service: "{SERVICE}"
                """
            )
        )
        argv = [_PY, "-m", "narun", "gateway", "-c", str(config), "--log-level", "warning"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        gateway = procs.start("gateway", argv)
        gateway.wait_for_port(port, timeout=30)
        return Running(
            url=f"http://127.0.0.1:{port}{PATH}",
            roles={"gateway": "gateway", "nats-server": "nats-server", "consumer": "consumer"},
            rss_roles=("gateway",),
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )

    return start


STACKS: tuple[Stack, ...] = (
    Stack("uvicorn", "uvicorn (direct)", _direct),
    Stack("caddy", "Caddy -> uvicorn", _caddy, needs=("caddy",)),
    Stack("nginx", "nginx -> uvicorn", _nginx, needs=("nginx",)),
    Stack("narun", "narun (1 gateway)", _narun(1)),
    Stack("narun2", "narun (2 gateways)", _narun(2)),
)


def check(url: str, timeout: float = 30.0) -> None:
    """Send the benchmark request until it gets the expected answer (the stack is up)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            url, data=BODY, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
                if response.status == 200 and body == EXPECTED:
                    return
                last = f"{response.status} {body!r}"
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer as expected: {last}")
