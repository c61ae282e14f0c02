"""Start one instance process; :mod:`narun.supervise` stops and reaps it.

The one place the node runner touches processes. On Linux a child also gets SIGTERM
when the node dies (``PR_SET_PDEATHSIG``), so a killed node leaves no instance behind to
double the ones placed elsewhere.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from narun.supervise import Child

__all__ = ["Instance", "spawn"]

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


class Instance:
    """A running instance process with piped stdout/stderr, in a process group of its own."""

    def __init__(
        self, child: Child, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader
    ) -> None:
        self.child = child
        self.pid = child.pid
        """Process id (= its process group id)."""
        self.stdout = stdout
        """The process's standard output."""
        self.stderr = stderr
        """The process's standard error."""
        self.stop_requested = False
        """True once :meth:`stop` was called: the exit was asked for."""

    async def wait(self) -> int:
        """Wait for the exit; the code (negative: killed by that signal)."""
        return await self.child.wait_async()

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, up to ``grace`` seconds to exit, then SIGKILL; the exit code."""
        self.stop_requested = True
        return await self.child.stop_async(grace=grace)


async def _reader(pipe: IO[bytes]) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


async def spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Instance:
    """Start ``argv`` with exactly ``env``; ``OSError`` if it cannot be executed.

    :meth:`narun.supervise.Child.start` adds to this process's environment and merges
    stderr into stdout; an instance needs neither, so the process is made here and handed
    to :class:`~narun.supervise.Child`, which signals, stops and reaps it.
    """
    popen = subprocess.Popen(  # noqa: ASYNC220 - a fork and exec, nothing to wait for
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_PREEXEC,
    )
    child = Child(popen, name=Path(argv[0]).name, own_group=True)
    assert popen.stdout is not None
    assert popen.stderr is not None
    return Instance(child, await _reader(popen.stdout), await _reader(popen.stderr))
