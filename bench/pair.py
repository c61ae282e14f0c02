"""One app served two ways, for the side-by-side sections (streams, WebSocket).

:func:`start_direct` serves an ASGI app on uvicorn (uvloop, httptools);
:func:`start_narun` serves the same app through narun: nats-server, ``narun serve`` and a
one-process ``narun gateway`` routing to it. Both start their processes in the caller's
:class:`~bench.procs.Procs` (stopped when its block ends) and return the base URL and the
PIDs of each role, for RSS and CPU sampling.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Procs, free_port

__all__ = ["Started", "start_direct", "start_narun"]

_PY = sys.executable


@dataclass(frozen=True)
class Started:
    """A stack that is up: where to send requests and which processes serve them."""

    url: str
    """``http://127.0.0.1:<port>``, no trailing slash."""
    roles: dict[str, list[int]]
    """Role (``uvicorn``; ``gateway``, ``nats-server``, ``consumer``) -> PIDs."""


def start_direct(procs: Procs, name: str, app: str, *uvicorn_args: str) -> Started:
    """uvicorn serving ``app`` alone, as process ``name``; ``uvicorn_args`` are added."""
    port = free_port()
    uv = procs.start(
        name,
        [
            *(_PY, "-m", "uvicorn", app),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", *uvicorn_args),
            *("--no-access-log", "--log-level", "warning"),
        ],
    )
    uv.wait_for_port(port, timeout=30)
    return Started(f"http://127.0.0.1:{port}", {"uvicorn": procs.pids(name)})


def start_narun(
    procs: Procs,
    workdir: Path,
    suffix: str,
    app: str,
    service: str,
    routes: list[dict[str, Any]],
    **settings: Any,
) -> Started:
    """nats-server, ``narun serve app`` as ``service`` and a gateway with ``routes``.

    The processes are named ``nats-server-<suffix>``, ``consumer-<suffix>`` and
    ``gateway-<suffix>``; ``settings`` are more gateway config keys.
    """
    from narun.transport.server import find_nats_server

    nats_port = free_port()
    nats = procs.start(
        f"nats-server-{suffix}", [find_nats_server(), "-a", "127.0.0.1", "-p", str(nats_port)]
    )
    nats.wait_for_port(nats_port, timeout=30)
    nats_url = f"nats://127.0.0.1:{nats_port}"
    procs.start(
        f"consumer-{suffix}",
        [
            *(_PY, "-m", "narun", "serve", app, "--service", service),
            *("--nats-url", nats_url, "--log-level", "warning"),
        ],
    )
    gw_port = free_port()
    config = workdir / f"gateway-{suffix}.yaml"
    # YAML is a superset of JSON.
    config.write_text(
        json.dumps(
            {
                "nats_url": nats_url,
                "server_addr": f"127.0.0.1:{gw_port}",
                "metrics_addr": "",
                **settings,
                "routes": routes,
            },
            indent=2,
        )
    )
    gateway = procs.start(
        f"gateway-{suffix}",
        [_PY, "-m", "narun", "gateway", "-c", str(config), "--log-level", "warning"],
    )
    gateway.wait_for_port(gw_port, timeout=30)
    time.sleep(1.0)  # the consumer registers
    return Started(
        f"http://127.0.0.1:{gw_port}",
        {
            "gateway": procs.pids(f"gateway-{suffix}"),
            "nats-server": procs.pids(f"nats-server-{suffix}"),
            "consumer": procs.pids(f"consumer-{suffix}"),
        },
    )
