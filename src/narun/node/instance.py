"""One slot (replica ``index`` of an app) on this node: its runs, restarts and updates.

A :class:`Slot` is told which spec it should run (:meth:`Slot.want`; ``None`` = stop) and
keeps that true in its own task: it starts a run, waits until it is ready, restarts a crashed
run with backoff until the budget is spent (``failed``), and on a new version starts the new
run next to the old one and stops the old one only once the new one is ready.
Everything outside the process (installing, readiness, status, logs, metrics) goes through
the :class:`SlotHost` the runner passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from narun.node.isolate import Sandbox
from narun.node.launcher import EXIT_SETUP
from narun.node.logship import pump
from narun.node.process import Instance, spawn
from narun.node.schema import InstanceState, Status, instance_id, now_iso
from narun.node.spec import AppSpec

__all__ = ["Launch", "Run", "Slot", "SlotHost"]

logger = logging.getLogger(__name__)

TAIL_LINES = 20
"""Output lines kept per run, shown with a ``failed`` status."""
TAIL_WIDTH = 400
"""Characters of each such line in the node state (which must fit in one NATS message)."""


class LaunchError(Exception):
    """The run cannot be started at all (install failed, bad digest): no retry helps."""


@dataclass(frozen=True)
class Launch:
    """How to start one run."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    sandbox: Sandbox | None = None
    """The run's cgroups and relays (closed when it exits), if it is isolated."""


class Run:
    """One process start of a slot."""

    def __init__(self, slot: Slot, spec: AppSpec) -> None:
        self.slot = slot
        self.spec = spec
        self.run_id = str(uuid.uuid4())
        self.status: Status = "installing"
        self.child: Instance | None = None
        self.exit_code: int | None = None
        self.error = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.started = time.monotonic()
        self.since = now_iso()
        self.exited = asyncio.Event()
        self.oom = False
        """Whether the kernel's OOM killer ended it (its memory limit)."""
        self.sandbox: Sandbox | None = None
        self._pumps: list[asyncio.Task[None]] = []

    @property
    def alive(self) -> bool:
        """Whether its process was started and has not exited."""
        return self.child is not None and not self.exited.is_set()

    @property
    def pid(self) -> int | None:
        """The process id while there is a process."""
        return self.child.pid if self.child is not None and self.exit_code is None else None

    def state(self, restarts: int) -> InstanceState:
        """How the node state shows this run."""
        return InstanceState(
            instance_id=self.slot.instance_id,
            app_name=self.slot.app,
            version=self.spec.version,
            run_id=self.run_id,
            status=self.status,
            pid=self.pid,
            restarts=restarts,
            exit_code=self.exit_code,
            error=self.error,
            last_lines=(
                tuple(line[:TAIL_WIDTH] for line in self.tail)
                if self.status in ("failed", "crashed", "oom")
                else ()
            ),
            since=self.since,
            memory_bytes=self.memory_bytes() if self.alive else None,
        )

    async def start(self, launch: Launch, host: SlotHost) -> None:
        """Start the process and its output pumps; ``OSError`` if it cannot start."""
        self.sandbox = launch.sandbox
        try:
            self.child = await spawn(launch.argv, env=launch.env, cwd=launch.cwd)
        except OSError:
            if self.sandbox is not None:
                await self.sandbox.close()
            raise
        self.started = time.monotonic()
        for stream, reader in (("stdout", self.child.stdout), ("stderr", self.child.stderr)):

            def on_line(line: str, stream: str = stream) -> None:
                self.tail.append(line)
                host.ship_log(self, stream, line)

            self._pumps.append(
                asyncio.create_task(pump(reader, on_line, max_bytes=host.max_log_line))
            )
        self._pumps.append(asyncio.create_task(self._watch()))

    async def _watch(self) -> None:
        assert self.child is not None
        code = await self.child.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._pumps[:2]), 5)
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                self.oom = await asyncio.to_thread(self.sandbox.oom_killed)
                await self.sandbox.close()
        self.exit_code = code
        self.exited.set()

    def setup_failure(self) -> str | None:
        """The launcher's reason, when the launcher could not set the run up."""
        if self.exit_code != EXIT_SETUP:
            return None
        return next((x for x in reversed(self.tail) if x.startswith("narun-launch:")), None)

    def memory_bytes(self) -> int | None:
        """Its cgroup's memory, else its process's resident set (Linux), else None."""
        if self.sandbox is not None and (used := self.sandbox.memory_bytes()) is not None:
            return used
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    async def stop(self, grace: float) -> None:
        """Stop the process (if any) and wait until its output is read."""
        if self.child is not None:
            await self.child.stop(grace)
            await self.exited.wait()


def _crash(run: Run) -> tuple[Status, str]:
    """``crashed``, or ``oom`` with the limit when the OOM killer ended the run."""
    if run.oom:
        limit = run.spec.memoryMaxMB or run.spec.memoryMB
        return "oom", f"killed at its memory limit ({limit} MiB); exit code {run.exit_code}"
    return "crashed", run.error


class SlotHost(Protocol):
    """What a slot needs from its node."""

    node_id: str
    max_log_line: int

    async def prepare(self, run: Run, index: int) -> Launch:
        """Install the artifact if any, build argv/env/cwd; :class:`LaunchError` if hopeless."""

    async def is_ready(self, run: Run) -> bool:
        """Whether the run serves (its Micro service answers with its run id)."""

    def ship_log(self, run: Run, stream: str, line: str) -> None:
        """Send one output line."""

    def on_status(self, run: Run, restarts: int) -> None:
        """``run.status`` changed: publish it, update metrics and node state."""

    def rollout_lock(self, app: str) -> asyncio.Lock:
        """Held while a slot of ``app`` replaces an old run: one at a time per node and app."""


class Slot:
    """Replica ``index`` of ``app`` on this node."""

    def __init__(self, host: SlotHost, app: str, index: int) -> None:
        self.host = host
        self.app = app
        self.index = index
        self.instance_id = instance_id(app, index)
        self._desired: AppSpec | None = None
        self._changed = asyncio.Event()
        self.current: Run | None = None
        """The run that serves (``running``), or the last one."""
        self.pending: Run | None = None
        """A run of a new version that is not ready yet (or failed)."""
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def desired(self) -> AppSpec | None:
        """The spec this slot should run (None: stop)."""
        return self._desired

    def want(self, spec: AppSpec | None) -> None:
        """Run ``spec`` (a change of version rolls), or stop with ``None``."""
        same = (spec is None and self._desired is None) or (
            spec is not None and self._desired is not None and spec.run_key == self._desired.run_key
        )
        if not same:
            self._desired = spec
            self._changed.set()
        if spec is not None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._main(), name=f"slot {self.instance_id}")

    async def wait_stopped(self) -> None:
        """Wait until the slot's task is done (after ``want(None)``)."""
        if self._task is not None:
            await self._task

    def states(self) -> list[InstanceState]:
        """The runs to show: the serving one and a pending/failed new one."""
        return [r.state(self.restarts) for r in (self.current, self.pending) if r is not None]

    def _set(self, run: Run, status: Status, error: str = "") -> None:
        run.status = status
        run.since = now_iso()
        if error:
            run.error = error
        self.host.on_status(run, self.restarts)

    async def _wait_change(self, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _main(self) -> None:
        failed_key: str | None = None
        counted: str | None = None
        try:
            while True:
                self._changed.clear()
                spec = self._desired
                if spec is None:
                    return
                cur = self.current
                if cur is not None and cur.alive and cur.spec.run_key == spec.run_key:
                    await self._watch_running(cur)
                    continue
                if failed_key == spec.run_key:
                    await self._wait_change()
                    continue
                if counted != spec.run_key:  # a new version starts with a fresh budget
                    self.restarts, counted = 0, spec.run_key
                failed_key = None
                outcome = await self._start_and_wait_ready(spec)
                if outcome in ("ready", "changed"):
                    continue
                if outcome == "failed":
                    failed_key = spec.run_key
                    continue
                # crashed before ready: restart after backoff, or give up
                if not await self._backoff_or_fail(spec):
                    failed_key = spec.run_key
        finally:
            await self._stop_all()

    async def _start_and_wait_ready(self, spec: AppSpec) -> str:
        """Start a run of ``spec``; once ready it replaces the old run. Returns what happened."""
        old = self.current if self.current is not None and self.current.alive else None
        lock = self.host.rollout_lock(self.app) if old is not None else None
        if lock is not None:
            await lock.acquire()
        try:
            run = Run(self, spec)
            if old is None:
                self.current = run
            else:
                self.pending = run
            self._set(run, "installing")
            try:
                launch = await self.host.prepare(run, self.index)
            except LaunchError as exc:
                self._set(run, "failed", str(exc))
                return "failed"
            except Exception as exc:  # NATS unreachable during a download...: try again
                logger.warning("%s: cannot prepare the run", self.instance_id, exc_info=True)
                self._set(run, "crashed", f"cannot prepare the run: {exc}")
                return "crashed"
            if self._desired is None or self._desired.run_key != spec.run_key:
                self._set(run, "stopped")
                self._forget(run, old)
                return "changed"
            self._set(run, "starting")
            try:
                await run.start(launch, self.host)
            except OSError as exc:
                self._set(run, "failed", f"cannot start {launch.argv[0]!r}: {exc}")
                return "failed"
            ready = await self._until_ready(run, spec)
            if ready == "ready":
                self._set(run, "running")
                if old is not None:
                    await self._stop_run(old)
                self.current, self.pending = run, None
                return "ready"
            if ready == "changed":
                await self._stop_run(run)
                self._forget(run, old)
                return "changed"
            setup = run.setup_failure()
            if setup is not None:
                self._set(run, "failed", setup)
                return "failed"
            if run.exit_code is None:
                run.error = f"not ready within {spec.ready_timeout_seconds:g}s"
                await run.stop(spec.stop_grace_seconds)
            else:
                run.error = f"exited with code {run.exit_code} before it was ready"
            self._set(run, *_crash(run))
            return "crashed"
        finally:
            if lock is not None:
                lock.release()

    def _forget(self, run: Run, old: Run | None) -> None:
        if self.pending is run:
            self.pending = None
        if self.current is run:
            self.current = old

    async def _until_ready(self, run: Run, spec: AppSpec) -> str:
        deadline = time.monotonic() + spec.ready_timeout_seconds
        if spec.service_name is None:
            deadline = time.monotonic() + spec.ready_seconds
        while True:
            if run.exited.is_set():
                return "exited"
            if self._desired is None or self._desired.run_key != spec.run_key:
                return "changed"
            if spec.service_name is None:
                if time.monotonic() >= deadline:
                    return "ready"
            elif await self.host.is_ready(run):
                return "ready" if not run.exited.is_set() else "exited"
            if time.monotonic() >= deadline:
                return "timeout"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.exited.wait(), 0.2)

    async def _watch_running(self, run: Run) -> None:
        exited = asyncio.create_task(run.exited.wait())
        changed = asyncio.create_task(self._changed.wait())
        try:
            await asyncio.wait((exited, changed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            changed.cancel()
        if not run.exited.is_set():
            return  # the desired spec changed: the main loop decides
        run.error = f"exited with code {run.exit_code}"
        self._set(run, *_crash(run))
        if time.monotonic() - run.started >= run.spec.restart.reset_after_seconds:
            self.restarts = 0
        if not await self._backoff_or_fail(run.spec):
            self._set(run, "failed", f"gave up after {self.restarts} restarts; {run.error}")
            self.current = run
            # wait here for a new version or a stop
            while self._desired is not None and self._desired.run_key == run.spec.run_key:
                self._changed.clear()
                await self._wait_change()

    async def _backoff_or_fail(self, spec: AppSpec) -> bool:
        """Count a restart and wait its backoff; False when the budget is spent."""
        if self.restarts >= spec.restart.max_restarts:
            run = self.pending or self.current
            if run is not None and run.status != "failed":
                self._set(run, "failed", f"gave up after {self.restarts} restarts; {run.error}")
            return False
        self.restarts += 1
        await self._wait_change(spec.restart.backoff(self.restarts))
        return True

    async def _stop_run(self, run: Run) -> None:
        if run.child is None or run.exit_code is not None:
            return
        self._set(run, "stopping")
        await run.stop(run.spec.stop_grace_seconds)
        self._set(run, "stopped")

    async def _stop_all(self) -> None:
        for run in (self.pending, self.current):
            if run is not None:
                await self._stop_run(run)
