"""The process supervisor, with real child processes (small Python programs)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from narun.supervise import Child, Exited, Group, NotReady, StillRunning
from tests.support import free_port

# A child that prints "ready", then on SIGTERM prints "term <name>" and exits with
# status <code> ("ignore": it ignores SIGTERM). Optional: a grandchild in its group.
PROGRAM = """
import signal, subprocess, sys, time
name, code = sys.argv[1], sys.argv[2]
def say(line):
    # One write per line: children share the log, and print() may write in pieces.
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
def term(signum, frame):
    say(f"term {name}")
    sys.exit(int(code))
signal.signal(signal.SIGTERM, signal.SIG_IGN if code == "ignore" else term)
if len(sys.argv) > 3:
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    say(f"grandchild {grandchild.pid}")
say(f"ready {name}")
while True:
    time.sleep(0.05)
"""


@pytest.fixture(autouse=True)
def no_child_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Kill whatever a test started and left running (say, after a failed assertion)."""
    started: list[Child] = []
    start = Child.start

    def recorded(*args: Any, **kwargs: Any) -> Child:
        child = start(*args, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(Child, "start", recorded)
    yield
    for child in started:
        child.kill()  # a no-op for a child already reaped


def program(name: str = "c", code: str = "0", *extra: str) -> list[str]:
    return [sys.executable, "-c", PROGRAM, name, code, *extra]


def wait_ready(log: Path, name: str = "c", timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if f"ready {name}" in text:
            return text
        time.sleep(0.02)
    raise AssertionError(f"{name} not ready:\n{log.read_text()}")


def gone(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (the test process is not its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_stop_sends_sigterm_and_returns_the_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    child = Child.start(program("c", "3"), output=log)
    wait_ready(log)
    assert child.running
    assert child.returncode is None
    assert child.stop(grace=20) == 3
    assert "term c" in log.read_text()
    assert not child.running
    assert child.signal(signal.SIGTERM) is False  # reaped: its PID is not ours any more


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    child = Child.start(program("c", "ignore"), output=log)
    wait_ready(log)
    started = time.monotonic()
    assert child.stop(grace=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 15  # the grace, not a hang


def test_stopping_a_child_leaves_nothing_of_its_group(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    child = Child.start(program("c", "0", "grandchild"), output=log)
    text = wait_ready(log)
    grandchild = int(text.split("grandchild ")[1].split()[0])
    # SIGTERM reaches the whole group: the grandchild (default handler) dies of it.
    assert child.stop(grace=20) == 0
    deadline = time.monotonic() + 10
    while not gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(grandchild)


def test_a_childs_exit_kills_what_is_left_of_its_group(tmp_path: Path) -> None:
    # The leader exits on its own; the grandchild ignores SIGTERM, yet is gone once the
    # leader is reaped.
    script = (
        "import subprocess, sys, signal;"
        "p = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']);"
        "print(p.pid, flush=True)"
    )
    log = tmp_path / "c.log"
    child = Child.start([sys.executable, "-c", script], output=log)
    assert child.wait(timeout=20) == 0
    grandchild = int(log.read_text().split()[0])
    deadline = time.monotonic() + 10
    while not gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(grandchild)


def test_wait_times_out_with_still_running(tmp_path: Path) -> None:
    child = Child.start(program(), output=tmp_path / "c.log")
    try:
        with pytest.raises(StillRunning):
            child.wait(timeout=0.2)
        assert child.running
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL


def test_input_env_and_output_reach_the_child(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    script = "import os, sys; print(sys.stdin.read(), os.environ['NARUN_TEST_X'], flush=True)"
    child = Child.start(
        [sys.executable, "-c", script],
        output=log,
        input=b"hello",
        env={"NARUN_TEST_X": "from-env"},
        name="echo",
    )
    assert child.name == "echo"
    assert child.wait(timeout=20) == 0
    assert log.read_text() == "hello from-env\n"


def test_pipe_output(tmp_path: Path) -> None:
    child = Child.start([sys.executable, "-c", "print('piped')"], output=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.read() == b"piped\n"
    child.stdout.close()
    assert child.wait(timeout=20) == 0


def test_a_child_without_its_own_group_is_signalled_alone(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    child = Child.start(program(), output=log, own_group=False)
    wait_ready(log)
    assert os.getpgid(child.pid) == os.getpgid(0)
    assert child.stop(grace=20) == 0


def _late_listener(port: int) -> list[str]:
    """A child that opens ``port`` on loopback after 0.3 s, then idles."""
    script = (
        "import socket, time; time.sleep(0.3); s = socket.socket();"
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"
    )
    return [sys.executable, "-c", script]


def test_wait_for_port(tmp_path: Path) -> None:
    port = free_port()
    child = Child.start(_late_listener(port))
    try:
        child.wait_for_port(port, timeout=20)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        child.stop()
    silent = Child.start(program(), output=tmp_path / "c.log")
    try:
        with pytest.raises(NotReady):
            silent.wait_for_port(free_port(), timeout=0.3)
    finally:
        silent.kill()


def test_wait_for_port_of_a_child_that_exits() -> None:
    child = Child.start([sys.executable, "-c", "raise SystemExit(4)"], name="quitter")
    with pytest.raises(Exited, match="quitter exited with 4") as info:
        child.wait_for_port(free_port(), timeout=20)
    assert info.value.code == 4


async def test_async_waits_do_not_block_the_loop(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    child = Child.start(program("c", "5"), output=log)
    await asyncio.to_thread(wait_ready, log)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(StillRunning):
            await child.wait_async(timeout=0.3)
        assert ticks >= 5  # the loop ran while we waited
        # Two waiters on one child both see its exit.
        waiters = [asyncio.create_task(child.wait_async()) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert await child.stop_async(grace=20) == 5
        assert await asyncio.gather(*waiters) == [5, 5]
    finally:
        ticker.cancel()


async def test_stop_async_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    child = Child.start(program("c", "ignore"), output=log)
    await asyncio.to_thread(wait_ready, log)
    assert await child.stop_async(grace=0.3) == -signal.SIGKILL


async def test_wait_for_port_async() -> None:
    port = free_port()
    child = Child.start(_late_listener(port))
    try:
        await child.wait_for_port_async(port, timeout=20)
    finally:
        assert await child.stop_async() == -signal.SIGTERM
    quitter = Child.start([sys.executable, "-c", "raise SystemExit(2)"])
    with pytest.raises(Exited):
        await quitter.wait_for_port_async(free_port(), timeout=20)


def test_group_stops_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "all.log"
    with Group(grace=20) as group:
        for name in ("a", "b", "c"):
            group.add(Child.start(program(name, "0"), output=log, name=name))
            wait_ready(log, name)
    assert [line for line in log.read_text().splitlines() if line.startswith("term")] == [
        "term c",
        "term b",
        "term a",
    ]
    assert [child.returncode for child in group.children] == [0, 0, 0]


def test_supervise_stops_the_others_when_one_exits(tmp_path: Path) -> None:
    log = tmp_path / "all.log"
    seen: list[tuple[str, int | None, bool]] = []
    with Group() as group:
        a = group.add(Child.start(program("a", "0"), output=log, name="a"))
        group.add(Child.start(program("b", "7"), output=log, name="b"))
        wait_ready(log, "a")
        wait_ready(log, "b")
        a.signal(signal.SIGTERM)  # "a" exits on its own, as far as the group knows
        first = group.supervise(
            on_exit=lambda child: seen.append(
                (child.name, child.returncode, group.first_exit is child)
            )
        )
    assert first is a
    assert sorted(seen) == [("a", 0, True), ("b", 7, False)]
    assert "term b" in log.read_text()


def test_supervise_kills_children_that_outlive_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "all.log"
    group = Group()
    quitter = group.add(Child.start([sys.executable, "-c", "pass"], name="quitter"))
    group.add(Child.start(program("stubborn", "ignore"), output=log, name="stubborn"))
    wait_ready(log, "stubborn")
    assert group.supervise(grace=0.3) is quitter
    assert [child.returncode for child in group.children] == [0, -signal.SIGKILL]


def test_forward_signals_passes_sigterm_on(tmp_path: Path) -> None:
    log = tmp_path / "all.log"
    caught: list[signal.Signals] = []
    before = signal.getsignal(signal.SIGTERM)
    with Group(grace=20) as group, group.forward_signals(on_signal=caught.append):
        group.add(Child.start(program("a", "0"), output=log, name="a"))
        wait_ready(log, "a")
        os.kill(os.getpid(), signal.SIGINT)  # reaches the child as SIGTERM
        assert group.supervise() is None
        assert group.stop_signal == signal.SIGINT
        late = group.add(Child.start(program("late", "6"), output=log, name="late"))
        assert late.wait(timeout=20) in (6, -signal.SIGTERM)  # SIGTERM at once, maybe early
    assert caught == [signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is before
    assert "term a" in log.read_text()


def test_without_pidfd_the_waits_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pidfd_open")  # as on a kernel older than 5.3, or not Linux
    log = tmp_path / "c.log"
    child = Child.start(program("c", "ignore"), output=log)
    wait_ready(log)
    with pytest.raises(StillRunning):
        child.wait(timeout=0.2)
    assert child.stop(grace=0.2) == -signal.SIGKILL
    other = Child.start(program("o", "8"), output=log)
    wait_ready(log, "o")

    async def stop() -> int:
        with pytest.raises(StillRunning):
            await other.wait_async(timeout=0.2)
        return await other.stop_async(grace=20)

    assert asyncio.run(stop()) == 8


def test_async_waits_under_uvloop(tmp_path: Path) -> None:
    import uvloop

    log = tmp_path / "c.log"
    child = Child.start(program("c", "9"), output=log)
    wait_ready(log)

    async def stop() -> int:
        waiter = asyncio.create_task(child.wait_async())
        await asyncio.sleep(0.05)
        code = await child.stop_async(grace=20)
        assert await waiter == code
        return code

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(stop()) == 9


async def test_an_asyncio_runner_captures_output_and_restarts_a_crashed_child() -> None:
    """The shape a node runner takes: a watcher task per child, logs read from a pipe."""
    script = "import sys; print('run', sys.argv[1], flush=True); raise SystemExit(3)"
    lines: list[str] = []
    codes: list[int] = []

    async def capture(child: Child) -> None:
        assert child.stdout is not None
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), child.stdout
        )
        try:
            async for line in reader:
                lines.append(line.decode().strip())
        finally:
            transport.close()

    async def watch(runs: int) -> None:
        for run in range(runs):
            child = Child.start([sys.executable, "-c", script, str(run)], output=subprocess.PIPE)
            reading = asyncio.create_task(capture(child))
            codes.append(await child.wait_async(timeout=20))
            await reading

    await asyncio.wait_for(watch(2), timeout=60)
    assert codes == [3, 3]
    assert lines == ["run 0", "run 1"]
