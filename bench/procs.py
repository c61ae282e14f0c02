"""Child processes for the benchmark (:mod:`narun.supervise`), and what /proc says of them.

Everything here is Linux-only (it reads ``/proc``), like the benchmark itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from narun.supervise import Child

__all__ = [
    "ProcStat",
    "Procs",
    "RssSampler",
    "cpu_seconds",
    "descendants",
    "free_port",
    "proc_stat",
    "rss_bytes",
]

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The few fields of ``/proc/<pid>/stat`` the benchmark uses."""

    pid: int
    ppid: int
    cpu_ticks: int
    """utime + stime, in clock ticks."""
    start_ticks: int
    """Start time after boot, in clock ticks (tells a reused PID apart)."""


def proc_stat(pid: int) -> ProcStat | None:
    """Read ``/proc/<pid>/stat``; None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime/stime are fields 14/15, starttime is field 22.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
    )


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds used so far by each live process of ``pids``."""
    out: dict[int, float] = {}
    for pid in pids:
        st = proc_stat(pid)
        if st is not None:
            out[pid] = st.cpu_ticks / _TICK
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` in the process tree (children first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                children.setdefault(st.ppid, []).append(st.pid)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class _Entry:
    child: Child
    log: Path
    known: dict[int, int] = field(default_factory=dict)
    """Descendant PIDs seen so far, with their start times."""


class Procs:
    """The processes of one benchmark stack. Use as a context manager.

    Each child starts in a new session (so it is its own process group leader) with its
    output in a log file under ``workdir``. On exit every child is stopped, newest first:
    SIGTERM to its group, then SIGKILL to the group and to any descendant that moved to
    another group, each checked by PID and start time so that a reused PID is never hit.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._children: list[_Entry] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> Child:
        """Start ``argv`` with output to ``<workdir>/<name>.log``."""
        log = self.workdir / f"{name}.log"
        child = Child.start(argv, name=name, env=env, cwd=cwd, output=log)
        self._children.append(_Entry(child, log))
        return child

    def pids(self, name: str) -> list[int]:
        """The PID of child ``name`` and of every process below it, remembered for stop."""
        entry = self._child(name)
        pids = [entry.child.pid, *descendants(entry.child.pid)]
        for pid in pids[1:]:
            st = proc_stat(pid)
            if st is not None:
                entry.known[pid] = st.start_ticks
        return pids

    def names(self) -> list[str]:
        """Names of the children started so far, oldest first."""
        return [entry.child.name for entry in self._children]

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines of child ``name``'s output."""
        text = self._child(name).log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _child(self, name: str) -> _Entry:
        for entry in self._children:
            if entry.child.name == name:
                return entry
        raise KeyError(name)

    def stop_all(self, timeout: float = 20.0) -> None:
        """Stop every child (newest first) and everything it started.

        An exception while stopping one child (say, Ctrl-C) does not leave the others
        running: they are all stopped, the interrupted one killed, then it is re-raised.
        """
        error: BaseException | None = None
        while self._children:
            entry = self._children.pop()
            try:
                self._stop(entry, timeout)
            except BaseException as exc:
                error = error or exc
                self._kill(entry)
        if error is not None:
            raise error

    def _kill(self, entry: _Entry) -> None:
        entry.child.kill()
        for pid, started in entry.known.items():
            if _same(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _stop(self, entry: _Entry, timeout: float) -> None:
        for d in descendants(entry.child.pid):
            st = proc_stat(d)
            if st is not None:
                entry.known.setdefault(d, st.start_ticks)
        # Its whole process group: SIGTERM, SIGKILL after the timeout, then whatever is left.
        entry.child.stop(grace=timeout)
        # Descendants that left its group (gateway workers lead their own): give them the
        # same time to follow, then kill them.
        deadline = time.monotonic() + timeout
        for d, started in entry.known.items():
            while _same(d, started) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _same(d, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(d, signal.SIGKILL)

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def _same(pid: int, start_ticks: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st.start_ticks == start_ticks


class RssSampler:
    """Samples the RSS of some processes in a thread; keeps the maximum of each."""

    def __init__(self, pids: Sequence[int], interval: float = 0.25) -> None:
        self.pids = list(pids)
        self.peak: dict[int, int] = dict.fromkeys(self.pids, 0)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_bytes(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_bytes(pid))
