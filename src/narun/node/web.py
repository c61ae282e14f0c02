"""The node's HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz`` and ``/discovery``.

``/discovery`` is Prometheus HTTP service discovery for the instances' own metrics, as Go
narun serves it: a JSON array with one entry per running instance whose spec has
``metrics``, ``targets: ["<host>:<port>"]`` and the labels ``job`` (``narun-workload``),
``narun_app``, ``narun_instance_id``, ``narun_node_id``, ``narun_tag`` and
``__metrics_path__``. A ``nonet`` instance's port is relayed to a host port first.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

from narun._types import Receive, Scope, Send
from narun.observe.ops import OpsApp

__all__ = ["DiscoveryTarget", "NodeWeb", "advertised_host", "discovery_document"]


@dataclass(frozen=True)
class DiscoveryTarget:
    """One scrapeable instance."""

    host: str
    port: int
    path: str
    app: str
    instance_id: str
    node_id: str
    tag: str


def discovery_document(targets: list[DiscoveryTarget]) -> bytes:
    """The JSON Prometheus ``http_sd_configs`` reads (Go narun's labels)."""
    return json.dumps(
        [
            {
                "targets": [f"{t.host}:{t.port}"],
                "labels": {
                    "job": "narun-workload",
                    "narun_app": t.app,
                    "narun_instance_id": t.instance_id,
                    "narun_node_id": t.node_id,
                    "narun_tag": t.tag,
                    "__metrics_path__": t.path,
                },
            }
            for t in sorted(targets, key=lambda t: t.instance_id)
        ],
        separators=(",", ":"),
    ).encode()


def advertised_host(metrics_addr: str) -> str:
    """The host Prometheus should scrape: the metrics address's, or this machine's.

    For a wildcard or empty host, the local address of a UDP "connection" towards a
    public address (no packet is sent), as Go narun does; ``127.0.0.1`` without a route.
    """
    host = metrics_addr.rpartition(":")[0].strip("[]")
    if host and host not in ("0.0.0.0", "::"):
        return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 80))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class NodeWeb:
    """``/discovery`` here, everything else to :class:`~narun.observe.ops.OpsApp`."""

    def __init__(self, ops: OpsApp, targets: Callable[[], list[DiscoveryTarget]]) -> None:
        self.ops = ops
        self.targets = targets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["path"] != "/discovery":
            await self.ops(scope, receive, send)
            return
        body = discovery_document(self.targets())
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"content-length", b"%d" % len(body)),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
