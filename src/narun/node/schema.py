"""Names in NATS and the JSON documents the node runner writes there (pure).

Bucket, store and subject names are Go narun's where the concept is the same; the JSON
shapes keep Go's fields and add ours (see ``docs/node.md``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "APP_CONFIGS_BUCKET",
    "LOG_STREAM",
    "NODE_STATES_BUCKET",
    "PLACEMENTS_BUCKET",
    "SCALE_BUCKET",
    "InstanceState",
    "LogLine",
    "NodeState",
    "Placement",
    "Status",
    "StatusUpdate",
    "control_subject",
    "instance_id",
    "log_subject",
    "now_iso",
    "placement_key",
    "status_subject",
]

APP_CONFIGS_BUCKET = "app-configs"
"""KV: app name -> app spec (YAML)."""
NODE_STATES_BUCKET = "node-runner-states"
"""KV: node ID -> :class:`NodeState` JSON; the bucket TTL is the node expiry."""
PLACEMENTS_BUCKET = "narun-placements"
SCALE_BUCKET = "narun-scale"
"""Autoscaled apps' instance counts (key = app, :class:`narun.node.scaling.ScaleDoc`)."""
"""KV: ``<app>.<index>`` -> :class:`Placement` JSON, written with compare-and-set."""
LOG_STREAM = "NARUN_LOGS"
"""JetStream stream keeping ``logs.>`` within size and age limits."""

Status = Literal[
    "installing", "starting", "running", "stopping", "stopped", "crashed", "oom", "failed"
]
"""Go narun's statuses, plus ``installing`` (download and venv build) and ``oom`` (ended by
the kernel's OOM killer at the spec's memory limit; restarted like ``crashed``)."""


def log_subject(app: str, node: str) -> str:
    """``logs.<app>.<node>``: where an instance's output lines go."""
    return f"logs.{app}.{node}"


def status_subject(app: str, node: str) -> str:
    """``status.<app>.<node>``: where status changes go."""
    return f"status.{app}.{node}"


def placement_key(app: str, index: int) -> str:
    """The ``narun-placements`` key of replica ``index`` of ``app``."""
    return f"{app}.{index}"


def control_subject(node: str) -> str:
    """``narun.node.<node>.control``: requests to stop or restart one of a node's instances."""
    return f"narun.node.{node}.control"


def instance_id(app: str, index: int) -> str:
    """``<app>-<index>``, as Go narun names instances."""
    return f"{app}-{index}"


def now_iso() -> str:
    """The current UTC time, RFC 3339 with microseconds."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Placement:
    """Who runs replica ``index`` of ``app_name``."""

    app_name: str
    index: int
    node_id: str
    claimed_at: str = ""

    def encode(self) -> bytes:
        """JSON bytes for the KV."""
        return _dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> Placement | None:
        """Parse, or None for something that is not a placement."""
        try:
            d = json.loads(raw)
            return cls(str(d["app_name"]), int(d["index"]), str(d["node_id"]), str(d["claimed_at"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class InstanceState:
    """One run of an instance as its node reports it."""

    instance_id: str
    app_name: str
    version: str
    run_id: str
    status: Status
    pid: int | None = None
    restarts: int = 0
    exit_code: int | None = None
    error: str = ""
    last_lines: tuple[str, ...] = ()
    since: str = ""
    memory_bytes: int | None = None
    """Memory the run uses (its cgroup's, else its process's resident set), if known."""


@dataclass(frozen=True)
class NodeState:
    """A node's heartbeat document (Go's fields first)."""

    node_id: str
    last_seen: str
    version: str
    start_time: str
    managed_instances: tuple[str, ...]
    status: Literal["running", "shutting_down"]
    os: str
    arch: str
    labels: dict[str, str] = field(default_factory=dict)
    python: str = ""
    instances: tuple[InstanceState, ...] = ()

    def encode(self) -> bytes:
        """JSON bytes for the KV."""
        return _dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> NodeState | None:
        """Parse, or None for something that is not a node state."""
        try:
            d = json.loads(raw)
            instances = tuple(
                InstanceState(**{**i, "last_lines": tuple(i.get("last_lines", ()))})
                for i in d.get("instances", ())
            )
            return cls(
                node_id=str(d["node_id"]),
                last_seen=str(d["last_seen"]),
                version=str(d.get("version", "")),
                start_time=str(d.get("start_time", "")),
                managed_instances=tuple(d.get("managed_instances") or ()),
                status="shutting_down" if d.get("status") == "shutting_down" else "running",
                os=str(d.get("os", "")),
                arch=str(d.get("arch", "")),
                labels=dict(d.get("labels") or {}),
                python=str(d.get("python", "")),
                instances=instances,
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class StatusUpdate:
    """One message on ``status.<app>.<node>`` (Go's fields plus app, version, run, restarts)."""

    instance_id: str
    node_id: str
    status: Status
    time: str
    app_name: str
    version: str
    run_id: str
    restarts: int
    pid: int | None = None
    exit_code: int | None = None
    error: str = ""

    def encode(self) -> bytes:
        """JSON bytes; like Go, ``pid``, ``exit_code`` and ``error`` only when set."""
        d = asdict(self)
        for key in ("pid", "exit_code"):
            if d[key] is None:
                del d[key]
        if not d["error"]:
            del d["error"]
        return _dumps(d)


@dataclass(frozen=True)
class LogLine:
    """One output line on ``logs.<app>.<node>`` (Go's fields plus ``run_id``)."""

    instance_id: str
    app_name: str
    node_id: str
    stream: Literal["stdout", "stderr"]
    message: str
    timestamp: str
    run_id: str = ""

    def encode(self) -> bytes:
        """JSON bytes."""
        return _dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> LogLine | None:
        """Parse, or None for something that is not a log line."""
        try:
            d = json.loads(raw)
            stream: Literal["stdout", "stderr"] = (
                "stderr" if d.get("stream") == "stderr" else "stdout"
            )
            return cls(
                str(d["instance_id"]),
                str(d["app_name"]),
                str(d["node_id"]),
                stream,
                str(d["message"]),
                str(d.get("timestamp", "")),
                str(d.get("run_id", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None
