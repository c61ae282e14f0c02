"""Start and stop one instance process: its own process group, SIGTERM, grace, SIGKILL.

The one place the node runner touches processes; it moves onto ``narun.supervise`` once
that lands. On Linux a child also gets SIGTERM when the node dies (``PR_SET_PDEATHSIG``),
so a killed node leaves no instance behind to double the ones placed elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["Child", "spawn"]

logger = logging.getLogger(__name__)


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None
    prctl = libc.prctl

    def setup() -> None:  # runs in the child between fork and exec
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


_PREEXEC = _die_with_parent()


class Child:
    """A running process with piped stdout/stderr, in a process group of its own."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        """Process id (= its process group id)."""
        self.stop_requested = False
        """True once :meth:`stop` was called: the exit was asked for."""

    @property
    def stdout(self) -> asyncio.StreamReader:
        """The child's standard output."""
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stderr(self) -> asyncio.StreamReader:
        """The child's standard error."""
        assert self.proc.stderr is not None
        return self.proc.stderr

    async def wait(self) -> int:
        """Wait for the exit; the code (negative: killed by that signal)."""
        return await self.proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, up to ``grace`` seconds to exit, then SIGKILL; the exit code."""
        self.stop_requested = True
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                return await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace)
            except TimeoutError:
                logger.warning("pid %d did not exit %.0fs after SIGTERM: SIGKILL", self.pid, grace)
        self._signal_group(signal.SIGKILL)  # also whatever it left behind in its group
        return await self.proc.wait()


async def spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Child:
    """Start ``argv``; ``OSError`` if it cannot be executed."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_PREEXEC,
    )
    return Child(proc)
