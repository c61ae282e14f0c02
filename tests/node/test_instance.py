"""One slot's life with real processes and a host that records what the node would publish."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from narun.node.instance import Launch, Run, Slot
from narun.node.spec import AppSpec, parse_spec

QUICK = {"backoff_seconds": 0.05, "max_backoff_seconds": 0.1, "max_restarts": 2}


class Host:
    """A SlotHost without NATS: it runs the spec's command and records statuses."""

    node_id = "t1"
    max_log_line = 1000

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.statuses: list[tuple[str, str, str]] = []  # (version, run id, status)
        self.lines: list[tuple[str, str]] = []
        self._locks: dict[str, asyncio.Lock] = {}

    async def prepare(self, run: Run, index: int) -> Launch:
        assert run.spec.command is not None
        env = {"PATH": os.environ.get("PATH", ""), "NARUN_RUN_ID": run.run_id}
        return Launch(argv=(*run.spec.command, *run.spec.args), env=env, cwd=self.cwd)

    async def is_ready(self, run: Run) -> bool:
        return False

    def ship_log(self, run: Run, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    def on_status(self, run: Run, restarts: int) -> None:
        self.statuses.append((run.spec.version, run.run_id, run.status))

    def rollout_lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def seen(self, version: str) -> list[str]:
        return [s for v, _, s in self.statuses if v == version]


def spec(code: str, **more: Any) -> AppSpec:
    data: dict[str, Any] = {
        "name": "t",
        "command": [sys.executable, "-c", code],
        "ready_seconds": 0.3,
        "stop_grace_seconds": 2,
        "restart": QUICK,
    }
    return parse_spec({**data, **more})


async def until(check: Any, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling what a real process does
            await asyncio.sleep(0.02)


def alive(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_crash_loop_gives_up_with_the_reason(tmp_path: Path) -> None:
    host = Host(tmp_path)
    slot = Slot(host, "t", 0)
    s = spec("import sys; print('boom: missing thing'); sys.exit(3)")
    slot.want(s)
    await until(lambda: "failed" in host.seen(s.version))
    [state] = slot.states()
    assert state.status == "failed"
    assert state.exit_code == 3
    assert state.restarts == 2
    assert "gave up after 2 restarts" in state.error
    assert "boom: missing thing" in state.last_lines
    assert host.seen(s.version).count("crashed") == 3  # the first run and 2 restarts
    slot.want(None)
    await slot.wait_stopped()


async def test_a_crash_after_running_is_restarted(tmp_path: Path) -> None:
    host = Host(tmp_path)
    slot = Slot(host, "t", 0)
    s = spec("import time; print('up', flush=True); time.sleep(60)")
    slot.want(s)
    await until(lambda: "running" in host.seen(s.version))
    assert slot.current is not None
    first = slot.current.pid
    os.kill(first or 0, 9)
    await until(lambda: slot.current is not None and slot.current.status == "running"
                and slot.current.pid != first)  # fmt: skip
    assert slot.restarts == 1
    assert host.seen(s.version)[:4] == ["installing", "starting", "running", "crashed"]
    assert ("stdout", "up") in host.lines
    second = slot.current.pid
    slot.want(None)
    await slot.wait_stopped()
    assert not alive(second)


async def test_a_new_version_replaces_the_old_one_only_once_ready(tmp_path: Path) -> None:
    host = Host(tmp_path)
    slot = Slot(host, "t", 0)
    old = spec("import time; time.sleep(60)", env={"V": "1"})
    new = spec("import time; time.sleep(60)", env={"V": "2"})
    slot.want(old)
    await until(lambda: "running" in host.seen(old.version))
    assert slot.current is not None
    old_pid = slot.current.pid
    slot.want(new)
    await until(lambda: "stopped" in host.seen(old.version))
    order = [(v, st) for v, _, st in host.statuses]
    assert order.index((new.version, "running")) < order.index((old.version, "stopping"))
    assert not alive(old_pid)
    assert slot.current is not None
    assert slot.current.spec.version == new.version
    assert slot.pending is None
    slot.want(None)
    await slot.wait_stopped()


async def test_a_new_version_that_never_gets_ready_leaves_the_old_one_serving(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path)
    slot = Slot(host, "t", 0)
    good = spec("import time; time.sleep(60)")
    bad = spec("import sys; print('cannot start'); sys.exit(1)", env={"V": "bad"})
    slot.want(good)
    await until(lambda: "running" in host.seen(good.version))
    assert slot.current is not None
    pid = slot.current.pid
    slot.want(bad)
    await until(lambda: "failed" in host.seen(bad.version))
    assert alive(pid)
    statuses = {s.version: s.status for s in slot.states()}
    assert statuses == {good.version: "running", bad.version: "failed"}
    slot.want(None)
    await slot.wait_stopped()
    assert not alive(pid)


async def test_stop_kills_what_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    host = Host(tmp_path)
    slot = Slot(host, "t", 0)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    s = spec(stubborn, stop_grace_seconds=0.5)
    slot.want(s)
    await until(lambda: "running" in host.seen(s.version))
    assert slot.current is not None
    pid = slot.current.pid
    loop = asyncio.get_running_loop()
    began = loop.time()
    slot.want(None)
    await slot.wait_stopped()
    assert loop.time() - began >= 0.4
    assert not alive(pid)
    assert slot.current.exit_code == -9
    assert host.seen(s.version)[-2:] == ["stopping", "stopped"]


async def test_a_program_that_cannot_be_executed_fails_at_once(tmp_path: Path) -> None:
    host = Host(tmp_path)
    slot = Slot(host, "t", 0)
    s = parse_spec({"name": "t", "command": str(tmp_path / "no-such-program")})
    slot.want(s)
    await until(lambda: "failed" in host.seen(s.version))
    [state] = slot.states()
    assert "cannot start" in state.error
    assert "no-such-program" in state.error
    slot.want(None)
    await slot.wait_stopped()


async def test_a_failing_preparation_is_retried_like_a_crash(tmp_path: Path) -> None:
    class Flaky(Host):
        calls = 0

        async def prepare(self, run: Run, index: int) -> Launch:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("NATS timeout while fetching")
            return await super().prepare(run, index)

    host = Flaky(tmp_path)
    slot = Slot(host, "t", 0)
    s = spec("import time; time.sleep(60)")
    slot.want(s)
    await until(lambda: "running" in host.seen(s.version))
    assert host.seen(s.version)[:2] == ["installing", "crashed"]
    assert slot.restarts == 1
    slot.want(None)
    await slot.wait_stopped()
