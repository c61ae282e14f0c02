"""``narun node``: one node of the runner: heartbeats, placement, instances, logs, metrics.

:class:`NodeRunner` connects to NATS, creates the buckets and the log stream, writes its
:class:`~narun.node.schema.NodeState` every ``heartbeat`` seconds, and reconciles every
``reconcile_interval`` seconds (and at once when a spec or a placement changes): it claims
the slots :func:`~narun.node.placement.plan` gives it (compare-and-set), runs exactly the
slots whose placement names it (:class:`~narun.node.instance.Slot`), and releases what it
should no longer run. See ``docs/node.md`` for the whole design.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from narun.errors import ConfigError
from narun.node import artifact
from narun.node.artifact import Installed
from narun.node.autoscale import Autoscale
from narun.node.files import fetch_file, place
from narun.node.instance import Launch, LaunchError, Run, Slot
from narun.node.isolate import SandboxError, needs_launcher, prepare_sandbox
from narun.node.launch import instance_env, launch
from narun.node.logship import DEFAULT_MAX_LINE
from narun.node.metrics import NodeMetrics
from narun.node.placement import NodeView, plan
from narun.node.scaling import ScaleDoc, current_replicas
from narun.node.schema import (
    SCALE_BUCKET,
    LogLine,
    NodeState,
    Placement,
    StatusUpdate,
    control_subject,
    log_subject,
    now_iso,
    placement_key,
    status_subject,
)
from narun.node.secrets import KEY_ENV, KEY_PATH_ENV, MasterKey, SecretError, StoredSecret
from narun.node.spec import AppSpec, parse_spec
from narun.node.store import (
    Buckets,
    NodeError,
    ensure_log_stream,
    open_buckets,
    open_scale_bucket,
    open_secrets,
    read_all,
)
from narun.node.web import DiscoveryTarget, NodeWeb, advertised_host
from narun.transport.auth import NatsAuth
from narun.transport.connect import connect, drain

__all__ = ["NodeOptions", "NodeRunner"]

logger = logging.getLogger(__name__)

RUNNER_VERSION = "0.1.0"
_NEVER_PASSED = frozenset({KEY_ENV, KEY_PATH_ENV})


@dataclass(frozen=True)
class NodeOptions:
    """Everything ``narun node`` takes."""

    node_id: str
    """This node's ID: unique among the nodes of one NATS."""
    data_dir: Path
    """Artifacts, virtualenvs and instance directories."""
    nats_url: str = "nats://localhost:4222"
    """NATS server(s), comma-separated."""
    nats_auth: NatsAuth | None = None
    """How the node authenticates to NATS (never given to instances)."""
    labels: dict[str, str] = field(default_factory=dict)
    """``key=value`` labels that app specs select nodes by."""
    heartbeat: float = 5.0
    """Seconds between node state writes."""
    node_expiry: float = 45.0
    """TTL of the node states bucket when this node creates it."""
    reconcile_interval: float = 5.0
    """Seconds between reconcile steps (changes also trigger one at once)."""
    metrics_addr: str = "127.0.0.1:9100"
    """``/metrics``, ``/healthz``, ``/readyz``; empty: off."""
    pass_env: tuple[str, ...] = ()
    """Names of node environment variables instances also get."""
    log_max_bytes: int = 100 * 1024 * 1024
    """Size limit of the log stream (when this node creates or updates it)."""
    log_max_age: float = 7 * 24 * 3600.0
    """Age limit of the log stream, seconds."""
    max_log_line: int = DEFAULT_MAX_LINE
    """Longer output lines are split into pieces of this many bytes."""
    python: str = sys.executable
    """Python that runs ``app`` specs deployed without an artifact."""
    master_key: MasterKey | None = None
    """Decrypts ``valueFromSecret`` env entries; without it such an instance is ``failed``."""

    def __post_init__(self) -> None:
        leaking = sorted(set(self.pass_env) & _NEVER_PASSED)
        if leaking:
            raise ConfigError(f"--pass-env {leaking[0]}: the node's master key never reaches apps")


class NodeRunner:
    """One node. ``await run(stop)`` until ``stop`` is set, then drain and leave."""

    def __init__(self, options: NodeOptions, *, metrics: NodeMetrics | None = None) -> None:
        self.options = options
        self.node_id = options.node_id
        self.max_log_line = options.max_log_line
        self.metrics = metrics or NodeMetrics()
        self.started = now_iso()
        self.nc: Client | None = None
        self._b: Buckets | None = None
        self._secrets_kv: Any = None
        self._paused: dict[tuple[str, int], str] = {}
        """Slots stopped from the admin page -> the version stopped (a new one runs again)."""
        self._epochs: dict[tuple[str, int], int] = {}
        self._advertised = "127.0.0.1"
        self._slots: dict[tuple[str, int], Slot] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        """Set by a wake: a request waits, so the next reconcile skips the settling pause."""
        self._state_dirty = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=100_000)
        self._shutting_down = False
        self._dropped = 0
        self._background: set[asyncio.Task[None]] = set()
        self._bad_specs: dict[str, int] = {}
        self._autoscale: Autoscale | None = None

    # --- SlotHost -------------------------------------------------------------------

    def rollout_lock(self, app: str) -> asyncio.Lock:
        """One replacement at a time per app on this node."""
        return self._locks.setdefault(app, asyncio.Lock())

    async def prepare(self, run: Run, index: int) -> Launch:
        """Install the artifact (if any) and build how to start ``run``."""
        spec = run.spec
        work = self.options.data_dir / "instances" / f"{spec.name}-{index}"
        work.mkdir(parents=True, exist_ok=True)
        root = work
        read_exec = [sys.base_prefix, sys.prefix, str(Path(self.options.python).parent)]
        python, executable = self.options.python, None
        if spec.artifact is not None:
            installed = await self._install(spec)
            root = Path(installed.root)
            python = str(installed.python) if installed.python else python
            executable = str(installed.executable) if installed.executable else None
            read_exec.append(str(root))
            if installed.python is not None:
                read_exec.append(str(Path(installed.python).parent.parent))  # the venv
            if installed.executable is not None:
                read_exec.append(str(installed.executable))
        mounted = await self._mount_files(spec, work)
        env = instance_env(
            os.environ,
            spec=spec,
            index=index,
            node_id=self.node_id,
            run_id=run.run_id,
            root=root,
            nats_url=self.options.nats_url,
            pass_env=self.options.pass_env,
        )
        env.update(await self._resolve_secrets(spec))
        env["NARUN_WORK_DIR"] = str(work)
        plain = launch(
            spec,
            root=root,
            python=python,
            executable=executable,
            nats_url=self.options.nats_url,
            env=env,
        )
        if not needs_launcher(spec):
            return plain
        program = shutil.which(plain.argv[0], path=env.get("PATH")) or plain.argv[0]
        try:
            sandbox = await prepare_sandbox(
                spec,
                name=f"{self.node_id}-{spec.name}-{index}-{run.run_id[:8]}",
                argv=plain.argv,
                work_dir=work,
                env=env,
                read_exec=[*read_exec, program],
                mounted=mounted,
                metrics_host=self._advertised,
            )
        except SandboxError as exc:
            raise LaunchError(str(exc)) from None
        return Launch(argv=sandbox.argv, env=env, cwd=plain.cwd, sandbox=sandbox)

    async def _mount_files(self, spec: AppSpec, work: Path) -> list[Path]:
        """Fetch (digest-checked) and place the spec's ``mounts`` in the work directory."""
        if not spec.mounts:
            return []
        assert self._b is not None
        out = []
        for m in spec.mounts:
            try:
                local = await fetch_file(
                    self._b.js, m.source.object_store, cache_dir=self.options.data_dir / "files"
                )
                out.append(await asyncio.to_thread(place, local, work, m.path))
            except NodeError as exc:
                raise LaunchError(str(exc)) from None
        return out

    async def _resolve_secrets(self, spec: AppSpec) -> dict[str, str]:
        """Decrypt the spec's ``valueFromSecret`` entries; :class:`LaunchError` names the problem.

        The messages name the variable and the secret, never a value.
        """
        if not spec.secret_env:
            return {}
        key = self.options.master_key
        if key is None:
            raise LaunchError(
                f"env {sorted(spec.secret_env)[0]} needs a secret and this node has no master "
                "key (narun node --master-key-file, or $NARUN_MASTER_KEY)"
            )
        out: dict[str, str] = {}
        for var, name in sorted(spec.secret_env.items()):
            try:
                entry = await self._secrets_kv.get(name)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                raise LaunchError(
                    f"env {var}: no secret named {name!r} (narun secret set)"
                ) from None
            try:
                stored = StoredSecret.decode(entry.value or b"", key_name=name)
                value = stored.open(key)
                out[var] = value.decode()
            except SecretError as exc:
                raise LaunchError(f"env {var}: {exc}") from None
            except UnicodeDecodeError:
                raise LaunchError(f"env {var}: secret {name!r} is not UTF-8 text") from None
        return out

    async def _secret_revisions(self) -> dict[str, int]:
        entries = await read_all(self._secrets_kv)
        return {name: e.revision or 0 for name, e in entries.items()}

    async def _install(self, spec: AppSpec) -> Installed:
        assert spec.artifact is not None
        assert self._b is not None
        ref = spec.artifact
        try:
            archive = await artifact.download(
                self._b.js,
                ref.object,
                dest_dir=self.options.data_dir / "artifacts",
                digest=ref.digest,
            )
            return await asyncio.to_thread(
                artifact.install,
                archive,
                digest=ref.digest,
                kind=ref.kind,
                cache_dir=self.options.data_dir / "venvs",
            )
        except artifact.ArtifactError as exc:
            raise LaunchError(str(exc)) from None

    async def is_ready(self, run: Run) -> bool:
        """Whether a PING of the run's service gets an answer carrying its run id."""
        service = run.spec.service_name
        nc = self.nc
        if service is None or nc is None or not nc.is_connected:
            return False
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        try:
            await nc.publish(f"$SRV.PING.{service}", b"", reply=inbox)
            deadline = time.monotonic() + 0.3
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except nats.errors.TimeoutError:
                    return False
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    meta = json.loads(msg.data).get("metadata") or {}
                    if meta.get("narun_run_id") == run.run_id:
                        return True
            return False
        finally:
            await sub.unsubscribe()

    def ship_log(self, run: Run, stream: str, line: str) -> None:
        """Queue one output line for ``logs.<app>.<node>``."""
        entry = LogLine(
            instance_id=run.slot.instance_id,
            app_name=run.slot.app,
            node_id=self.node_id,
            stream="stderr" if stream == "stderr" else "stdout",
            message=line,
            timestamp=now_iso(),
            run_id=run.run_id,
        )
        self._send(log_subject(run.slot.app, self.node_id), entry.encode())

    def on_status(self, run: Run, restarts: int) -> None:
        """Publish a status change, record it in metrics, refresh the node state soon."""
        update = StatusUpdate(
            instance_id=run.slot.instance_id,
            node_id=self.node_id,
            status=run.status,
            time=now_iso(),
            app_name=run.slot.app,
            version=run.spec.version,
            run_id=run.run_id,
            restarts=restarts,
            pid=run.pid,
            exit_code=run.exit_code,
            error=run.error,
        )
        logger.info(
            "%s %s (%s)%s",
            run.slot.instance_id,
            run.status,
            run.spec.version,
            f": {run.error}" if run.error and run.status in ("crashed", "oom", "failed") else "",
        )
        self._send(status_subject(run.slot.app, self.node_id), update.encode())
        self.metrics.record(
            app=run.slot.app,
            instance=run.slot.instance_id,
            node=self.node_id,
            run_id=run.run_id,
            version=run.spec.version,
            status=run.status,
            exit_code=run.exit_code,
            restarted=run.status == "starting" and restarts > 0,
        )
        self._state_dirty.set()

    def _send(self, subject: str, data: bytes) -> None:
        try:
            self._outbox.put_nowait((subject, data))
        except asyncio.QueueFull:
            self._dropped += 1

    # --- the node's own life --------------------------------------------------------

    def state(self) -> NodeState:
        """This node's state document now."""
        instances = [s for slot in self._slots.values() for s in slot.states()]
        return NodeState(
            node_id=self.node_id,
            last_seen=now_iso(),
            version=RUNNER_VERSION,
            start_time=self.started,
            managed_instances=tuple(sorted({i.instance_id for i in instances})),
            status="shutting_down" if self._shutting_down else "running",
            os=sys.platform,
            arch=platform.machine().lower(),
            labels=dict(self.options.labels),
            python=f"{sys.version_info.major}.{sys.version_info.minor}",
            instances=tuple(instances),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then stop every instance and leave cleanly."""
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        self.nc = await connect(
            opts.nats_url, name=f"narun node {self.node_id}", auth=opts.nats_auth
        )
        ops = None
        tasks: list[asyncio.Task[None]] = []
        try:
            self._b = await open_buckets(self.nc, node_expiry=opts.node_expiry)
            self._secrets_kv = await open_secrets(self.nc)
            await ensure_log_stream(
                self._b.js, max_bytes=opts.log_max_bytes, max_age=opts.log_max_age
            )
            await self._put_state()
            if opts.metrics_addr:
                ops = await self._start_ops()
            await self.nc.subscribe(control_subject(self.node_id), cb=self._on_control)
            scale_kv = await open_scale_bucket(self._b.js)
            self._autoscale = Autoscale(
                self.nc,
                scale_kv,
                node_id=self.node_id,
                on_change=self._woken,
                read_specs=self._read_specs,
            )
            await self._autoscale.start()
            for bucket in ("app-configs", "narun-placements", "narun-secrets", SCALE_BUCKET):
                await self.nc.subscribe(f"$KV.{bucket}.>", cb=self._on_change)
            tasks = [
                asyncio.create_task(self._publisher()),
                asyncio.create_task(self._heartbeat()),
                asyncio.create_task(self._reconcile_loop()),
            ]
            logger.info("node %s up (labels %s)", self.node_id, opts.labels or "none")
            await stop.wait()
        finally:
            # Instances stop whatever NATS does; each NATS step is bounded, so a node whose
            # server is gone still stops its instances and exits.
            self._shutting_down = True
            logger.info("node %s shutting down", self.node_id)
            for task in tasks[2:]:
                task.cancel()
            if self._autoscale is not None:
                await _bounded(self._autoscale.stop(), 2, "stop the autoscaler")
            if self._b is not None:
                await _bounded(self._put_state(), 2, "write the shutting_down state")
            await self._stop_all()
            await _bounded(self._release_all(), 5, "release the slots")
            for task in tasks[:2]:
                task.cancel()
            await _bounded(self._flush_outbox(), 2, "send the last statuses")
            if self._b is not None:
                await _bounded(self._b.nodes.delete(self.node_id), 2, "delete the node state")
            if ops is not None:
                await ops.stop()
            if not await _bounded(drain(self.nc), 5, "drain the NATS connection"):
                await self.nc.close()

    async def _start_ops(self) -> Any:
        from narun.observe.ops import OpsApp, OpsServer, nats_readiness

        ops = OpsApp(registry=self.metrics.registry, is_ready=lambda: nats_readiness(self.nc))
        self._advertised = advertised_host(self.options.metrics_addr)
        server = await OpsServer.start(NodeWeb(ops, self.discovery), self.options.metrics_addr)
        logger.info("metrics on http://%s/metrics", self.options.metrics_addr)
        return server

    def discovery(self) -> list[DiscoveryTarget]:
        """The running instances that declare ``metrics``, for ``/discovery``."""
        out = []
        for slot in self._slots.values():
            run = slot.current
            if run is None or run.status != "running" or run.spec.metrics is None:
                continue
            port = run.spec.metrics.port
            if run.sandbox is not None and run.sandbox.metrics_port is not None:
                port = run.sandbox.metrics_port
            out.append(
                DiscoveryTarget(
                    host=self._advertised,
                    port=port,
                    path=run.spec.metrics.path,
                    app=slot.app,
                    instance_id=slot.instance_id,
                    node_id=self.node_id,
                    tag=run.spec.tag or run.spec.version,
                )
            )
        return out

    async def _on_control(self, msg: Any) -> None:
        """``{"action": "stop"|"restart", "instance_id": ...}``: answer ``{"ok"|"error"}``."""
        try:
            request = json.loads(msg.data)
            action, target = request["action"], request["instance_id"]
            key = next(k for k, s in self._slots.items() if s.instance_id == target)
        except (ValueError, KeyError, TypeError, StopIteration):
            await msg.respond(b'{"error":"no such instance on this node"}')
            return
        if action == "stop":
            slot = self._slots[key]
            self._paused[key] = slot.desired.version if slot.desired else ""
        elif action == "restart":
            self._paused.pop(key, None)
            self._epochs[key] = self._epochs.get(key, 0) + 1
        else:
            await msg.respond(b'{"error":"action must be stop or restart"}')
            return
        logger.info("%s: %s asked through %s", target, action, msg.subject)
        self._wake.set()
        await msg.respond(json.dumps({"ok": f"{action} {target}"}).encode())

    async def _on_change(self, msg: Any) -> None:
        self._wake.set()

    def _woken(self) -> None:
        """A wake raised an app from zero: reconcile now, a request waits for it."""
        self._hurry.set()
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            subject, data = await self._outbox.get()
            nc = self.nc
            if nc is None:
                continue
            try:
                await nc.publish(subject, data)
            except Exception:
                self._dropped += 1

    async def _flush_outbox(self) -> None:
        nc = self.nc
        while not self._outbox.empty() and nc is not None and nc.is_connected:
            subject, data = self._outbox.get_nowait()
            with contextlib.suppress(Exception):
                await nc.publish(subject, data)

    async def _put_state(self) -> None:
        assert self._b is not None
        await self._b.nodes.put(self.node_id, self.state().encode())

    async def _heartbeat(self) -> None:
        last = written_before = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_dirty.wait(), self.options.heartbeat)
            # status changes refresh the state soon, but at most twice a second
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - last)))
            self._state_dirty.clear()
            last = time.monotonic()
            try:
                await self._put_state()
            except Exception as exc:
                logger.warning("cannot write the node state: %s", exc)
                continue
            written = time.monotonic()
            if written_before and written - written_before > self.options.node_expiry / 2:
                # Past the expiry, other nodes count this one as gone and take its slots.
                logger.warning(
                    "node state written %.1fs after the previous one (expiry %gs): "
                    "this node is slow or NATS is",
                    written - written_before,
                    self.options.node_expiry,
                )
            written_before = written

    async def _reconcile_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._reconcile()
            except Exception as exc:
                logger.warning("reconcile failed (retrying): %s", exc, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.reconcile_interval)
            with contextlib.suppress(TimeoutError):  # let a burst of changes settle
                await asyncio.wait_for(self._hurry.wait(), 0.1)
            self._hurry.clear()

    async def _read_specs(self) -> dict[str, AppSpec]:
        """The valid app specs in ``app-configs``, by name (a bad one logged once)."""
        b = self._b
        assert b is not None
        specs: dict[str, AppSpec] = {}
        for name, entry in (await read_all(b.apps)).items():
            try:
                spec = parse_spec(_yaml(entry.value), source=f"app-configs/{name}")
            except Exception as exc:
                if self._bad_specs.get(name) != entry.revision:  # once per revision
                    self._bad_specs[name] = entry.revision or 0
                    logger.warning("ignoring app %s: %s", name, exc)
                continue
            if spec.name == name:
                specs[name] = spec
        return specs

    async def _reconcile(self) -> None:
        b = self._b
        assert b is not None
        specs = await self._read_specs()
        nodes: dict[str, NodeView] = {}
        for node_id, entry in (await read_all(b.nodes)).items():
            state = NodeState.decode(entry.value or b"")
            if state is not None:
                nodes[node_id] = NodeView(
                    node_id=node_id,
                    labels=state.labels,
                    instances=len(state.managed_instances),
                    accepting=state.status == "running",
                )
        nodes[self.node_id] = NodeView(
            self.node_id, self.options.labels, len(self._slots), not self._shutting_down
        )
        scale: dict[str, ScaleDoc] = {}
        if self._autoscale is not None:
            self._autoscale.update(specs, {n for n, v in nodes.items() if v.accepting})
            if any(spec.autoscaled for spec in specs.values()):
                scale = await self._autoscale.docs()
        placed: dict[str, dict[int, tuple[Placement, int]]] = {}
        for key, entry in (await read_all(b.placements)).items():
            p = Placement.decode(entry.value or b"")
            if p is not None and key == placement_key(p.app_name, p.index):
                placed.setdefault(p.app_name, {})[p.index] = (p, entry.revision or 0)
        revisions = await self._secret_revisions()
        for app, spec in list(specs.items()):
            if spec.secret_env:  # a changed secret restarts (rolls) the instances using it
                used = sorted(set(spec.secret_env.values()))
                specs[app] = spec.salted(",".join(f"{n}:{revisions.get(n, 0)}" for n in used))
        mine: dict[tuple[str, int], AppSpec] = {}
        for app, spec in specs.items():
            current = placed.get(app, {})
            result = plan(
                app,
                replicas=current_replicas(spec, scale.get(app)),
                pins=spec.nodes,
                labels=spec.labels,
                nodes=nodes,
                placements={i: p.node_id for i, (p, _) in current.items()},
            )
            for index, owner in result.owners.items():
                held = current.get(index)
                if held is not None and held[0].node_id == self.node_id:
                    mine[(app, index)] = spec  # ours until another node takes it over
                elif (
                    owner == self.node_id
                    and not self._shutting_down
                    and await self._claim(app, index, held)
                ):
                    mine[(app, index)] = spec
            for index in result.surplus:
                held = current.get(index)
                if held and held[0].node_id == self.node_id:
                    await self._release(app, index, held[1])
        for app, current in placed.items():
            if app not in specs:
                for index, (p, rev) in current.items():
                    if p.node_id == self.node_id:
                        await self._release(app, index, rev)
        self._apply(mine)

    async def _claim(self, app: str, index: int, held: tuple[Placement, int] | None) -> bool:
        assert self._b is not None
        key = placement_key(app, index)
        value = Placement(app, index, self.node_id, now_iso()).encode()
        try:
            if held is None:
                await self._b.placements.create(key, value)
            else:
                await self._b.placements.update(key, value, last=held[1])
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            logger.info("slot %s taken by another node first", key)
            return False
        except nats.js.errors.APIError as exc:
            logger.info("slot %s not claimed: %s", key, exc)
            return False
        logger.info("claimed %s%s", key, f" from {held[0].node_id}" if held else "")
        return True

    async def _release(self, app: str, index: int, revision: int) -> None:
        assert self._b is not None
        slot = self._slots.get((app, index))
        if slot is not None:
            slot.want(None)
            await slot.wait_stopped()
        with contextlib.suppress(nats.js.errors.APIError, nats.errors.Error):
            await self._b.placements.delete(placement_key(app, index), last=revision)
            logger.info("released %s", placement_key(app, index))

    def _apply(self, mine: dict[tuple[str, int], AppSpec]) -> None:
        for key, spec in mine.items():
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = Slot(self, key[0], key[1])
            if self._paused.get(key) == spec.version:  # stopped from the admin page
                slot.want(None)
                continue
            epoch = self._epochs.get(key)
            slot.want(spec.salted(f"{spec.run_key}~{epoch}") if epoch else spec)
        self._paused = {k: v for k, v in self._paused.items() if k in mine and mine[k].version == v}
        for key, slot in list(self._slots.items()):
            if key not in mine:
                slot.want(None)
                if slot.desired is None and not slot.states():
                    del self._slots[key]
                elif slot.desired is None:
                    task = asyncio.create_task(self._forget_when_stopped(key, slot))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)

    async def _forget_when_stopped(self, key: tuple[str, int], slot: Slot) -> None:
        await slot.wait_stopped()
        if self._slots.get(key) is slot and slot.desired is None:
            del self._slots[key]
            self._state_dirty.set()

    async def _stop_all(self) -> None:
        for slot in self._slots.values():
            slot.want(None)
        await asyncio.gather(
            *(s.wait_stopped() for s in self._slots.values()), return_exceptions=True
        )

    async def _release_all(self) -> None:
        if self._b is None:
            return
        for key, entry in (await read_all(self._b.placements)).items():
            p = Placement.decode(entry.value or b"")
            if p is not None and p.node_id == self.node_id:
                await self._b.placements.delete(key, last=entry.revision)


async def _bounded(step: Awaitable[Any], seconds: float, what: str) -> bool:
    """Await ``step`` for at most ``seconds``; False (and a log line) if it failed."""
    try:
        await asyncio.wait_for(step, seconds)
    except Exception as exc:
        logger.warning("could not %s: %s", what, exc or type(exc).__name__)
        return False
    return True


def _yaml(raw: bytes | None) -> object:
    import yaml

    return yaml.safe_load(raw or b"")
