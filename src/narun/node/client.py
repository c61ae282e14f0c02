"""What the deploy, apps, logs and nodes commands do in NATS (the CLI only formats).

Every function takes a connected NATS client and returns plain values.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
import yaml
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from narun.node.schema import (
    APP_CONFIGS_BUCKET,
    LOG_STREAM,
    InstanceState,
    LogLine,
    NodeState,
)
from narun.node.secrets import MasterKey, SecretError, StoredSecret
from narun.node.spec import AppSpec, dump_spec, parse_spec
from narun.node.store import NodeError, NothingDeployed, open_buckets, open_secrets, read_all

__all__ = [
    "AppRow",
    "app_rows",
    "get_app",
    "list_nodes",
    "list_secrets",
    "put_app",
    "put_secret",
    "remove_app",
    "remove_secret",
    "stream_logs",
    "wait_for",
]


@dataclass(frozen=True)
class AppRow:
    """One app as ``apps ls`` and ``apps info`` show it."""

    spec: AppSpec
    instances: tuple[tuple[str, InstanceState], ...]
    """``(node_id, instance state)`` of every run the nodes report."""

    @property
    def running(self) -> int:
        """Runs of the current version that are ready."""
        return sum(
            1 for _, i in self.instances if i.status == "running" and i.version == self.spec.version
        )

    @property
    def nodes(self) -> tuple[str, ...]:
        """Nodes that run something of this app."""
        return tuple(sorted({n for n, _ in self.instances}))


async def put_app(nc: Client, spec: AppSpec) -> int:
    """Store ``spec`` in ``app-configs``; the KV revision."""
    b = await open_buckets(nc)
    return await b.apps.put(spec.name, dump_spec(spec))


async def remove_app(nc: Client, name: str) -> None:
    """Delete ``name`` from ``app-configs``; :class:`NodeError` if it is not there."""
    b = await open_buckets(nc, create=False)
    try:
        await b.apps.get(name)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        raise NodeError(f"no app named {name!r}") from None
    await b.apps.delete(name)


async def list_nodes(nc: Client) -> list[NodeState]:
    """Live nodes (expired ones are gone from the bucket), by ID."""
    try:
        b = await open_buckets(nc, create=False)
    except NothingDeployed:
        return []
    states = [NodeState.decode(e.value or b"") for e in (await read_all(b.nodes)).values()]
    return sorted((s for s in states if s is not None), key=lambda s: s.node_id)


async def app_rows(nc: Client) -> list[AppRow]:
    """Every app with what the nodes report about it."""
    try:
        b = await open_buckets(nc, create=False)
    except NothingDeployed:
        return []
    specs: list[AppSpec] = []
    for name, entry in sorted((await read_all(b.apps)).items()):
        try:
            specs.append(
                parse_spec(
                    yaml.safe_load(entry.value or b""), source=f"{APP_CONFIGS_BUCKET}/{name}"
                )
            )
        except Exception:
            continue
    states = [NodeState.decode(e.value or b"") for e in (await read_all(b.nodes)).values()]
    rows = []
    for spec in specs:
        inst = tuple(
            (s.node_id, i)
            for s in states
            if s is not None
            for i in s.instances
            if i.app_name == spec.name
        )
        rows.append(AppRow(spec, tuple(sorted(inst, key=lambda x: (x[1].instance_id, x[0])))))
    return rows


async def get_app(nc: Client, name: str) -> AppRow:
    """One app; :class:`NodeError` if there is none of that name."""
    for row in await app_rows(nc):
        if row.spec.name == name:
            return row
    raise NodeError(f"no app named {name!r}")


async def wait_for(nc: Client, check: Callable[[list[AppRow]], bool], *, timeout: float) -> bool:
    """Poll the apps until ``check`` holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check(await app_rows(nc)):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)


async def stream_logs(
    nc: Client,
    on_line: Callable[[LogLine], None],
    *,
    app: str | None,
    node: str | None = None,
    instance: str | None = None,
    last: int = 100,
    follow: bool = False,
) -> None:
    """The last ``last`` stored lines, then (with ``follow``) new ones until cancelled."""
    js = nc.jetstream(timeout=10)
    subject = f"logs.{app or '*'}.{node or '*'}"
    try:
        sub = await js.subscribe(
            subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, stream=LOG_STREAM
        )
    except nats.js.errors.NotFoundError:
        raise NodeError("no logs yet (no node has created the log stream)") from None
    except (
        nats.errors.NoRespondersError,
        nats.errors.TimeoutError,
        nats.js.errors.ServiceUnavailableError,
    ):
        raise NodeError("NATS has no JetStream (start nats-server with -js)") from None

    def keep(line: LogLine | None) -> bool:
        return line is not None and (instance is None or line.instance_id == instance)

    try:
        backlog: deque[LogLine] = deque(maxlen=max(last, 0) or None)
        # Each message says how many more match (num_pending): read until it says 0, or
        # until nothing comes (no stored line matches).
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                break
            line = LogLine.decode(msg.data)
            if keep(line):
                assert line is not None
                backlog.append(line)
            if not msg.metadata.num_pending:
                break
        if last > 0:
            for line in backlog:
                on_line(line)
        if not follow:
            return
        while True:
            try:
                msg = await sub.next_msg(timeout=3600)
            except nats.errors.TimeoutError:
                continue
            line = LogLine.decode(msg.data)
            if keep(line):
                assert line is not None
                on_line(line)
    finally:
        await sub.unsubscribe()


# --- secrets ---------------------------------------------------------------------------------


async def put_secret(
    nc: Client, key: MasterKey, name: str, value: bytes, *, description: str = ""
) -> int:
    """Encrypt ``value`` and store it under ``name`` (``created_at`` kept on update)."""
    kv = await open_secrets(nc)
    previous = None
    try:
        entry = await kv.get(name)
        previous = StoredSecret.decode(entry.value or b"", key_name=name)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError, SecretError):
        previous = None
    stored = StoredSecret.seal(key, name, value, description=description, previous=previous)
    return await kv.put(name, stored.encode())


async def list_secrets(nc: Client) -> list[StoredSecret]:
    """Every stored secret (ciphertext only), by name."""
    kv = await open_secrets(nc, create=False)
    out = []
    for name, entry in sorted((await read_all(kv)).items()):
        try:
            out.append(StoredSecret.decode(entry.value or b"", key_name=name))
        except SecretError:
            continue
    return out


async def remove_secret(nc: Client, name: str) -> None:
    """Purge ``name``; :class:`NodeError` if there is no such secret."""
    kv = await open_secrets(nc, create=False)
    try:
        await kv.get(name)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        raise NodeError(f"no secret named {name!r}") from None
    await kv.purge(name)
