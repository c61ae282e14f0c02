"""Child processes: start, watch, signal, stop and reap them, alone or as a group.

Every program part of narun that runs other processes uses this module: the gateway's
``--workers`` supervisor, ``narun dev``, the embedded ``nats-server``, the test suite and
the benchmark. It is Unix-only and at its best on Linux.

:class:`Child` is one process::

    child = Child.start(["nats-server", "-p", "4222"], name="nats", output=Path("nats.log"))
    child.wait_for_port(4222)          # raises Exited if it died first, NotReady on timeout
    ...
    code = child.stop(grace=10)        # SIGTERM, wait up to 10 s, SIGKILL, reap

- By default a child starts in a session of its own, so it leads its own process group:
  a terminal's Ctrl-C reaches only its parent (which decides what to pass on), and
  :meth:`Child.signal` reaches the child *and* whatever it started in its group.
- When a group-leading child is reaped, whatever is left in its group is killed first:
  stopping a child leaves nothing of it behind.
- A child's PID is only signalled while the child is not yet reaped, so a PID the
  kernel has since handed to another process is never hit.
- ``output`` takes a :class:`~pathlib.Path` (stdout and stderr appended to that file),
  ``subprocess.DEVNULL``, or ``subprocess.PIPE`` (then read :attr:`Child.stdout`).
  ``env`` is *added* to this process's environment. ``input`` is written to the
  child's standard input, which is then closed.

:class:`Group` is several children started and stopped together
(``group.add(Child.start(...))``): :meth:`Group.stop` stops them newest first (the reverse
of the order they depend on each other); :meth:`Group.forward_signals` passes SIGINT and
SIGTERM on to them as SIGTERM; and :meth:`Group.supervise` waits until all have exited,
stopping the others as soon as one exits on its own.

From asyncio
------------

Nothing here needs a thread. :attr:`Child.returncode` never blocks (``None`` while it
runs), :meth:`Child.start` only forks, and the waits have coroutine twins that do not block
the loop: :meth:`Child.wait_async`, :meth:`Child.stop_async`,
:meth:`Child.wait_for_port_async` and :meth:`Group.stop_async`. On Linux they sleep on a
pidfd registered with the loop (``add_reader``), so an exit is noticed at once and costs
nothing while the child runs; elsewhere they poll every 50 ms. Any number of coroutines
may await the same child. A runner that restarts crashed children watches each with
``await child.wait_async()`` in a task of its own and starts a new :class:`Child` from the
same arguments; to capture logs it passes a file in ``output``, or ``subprocess.PIPE`` and
reads :attr:`Child.stdout` (``loop.connect_read_pipe``). :meth:`Group.forward_signals`
and :meth:`Group.supervise` are for synchronous programs; an asyncio program installs
its own handlers with ``loop.add_signal_handler`` and calls :meth:`Group.signal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from signal import SIGINT, SIGKILL, SIGTERM, Signals
from types import FrameType
from typing import IO

from narun.errors import NarunError

__all__ = ["Child", "Exited", "Group", "NotReady", "StillRunning", "SuperviseError"]

logger = logging.getLogger(__name__)

_POLL = 0.05
"""Seconds between two looks where no pidfd can be waited on."""


class SuperviseError(NarunError):
    """A child process did not do what its supervisor waited for."""


class Exited(SuperviseError):
    """The child exited before it was ready."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
        """Its exit status (negative: killed by that signal)."""


class StillRunning(SuperviseError, TimeoutError):
    """The child was still running when a wait for its exit timed out."""


class NotReady(SuperviseError, TimeoutError):
    """The child did not open its port in time."""


class Child:
    """One child process, started by :meth:`start`, stopped by :meth:`stop` or :meth:`kill`."""

    def __init__(self, popen: subprocess.Popen[bytes], *, name: str, own_group: bool) -> None:
        """Wrap a process that was just started (use :meth:`start`)."""
        self._popen = popen
        self.name = name
        """How logs and errors call it."""
        self.own_group = own_group
        """Whether it leads a process group (and session) of its own."""
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # not Linux >= 5.3
            self._pidfd = os.pidfd_open(popen.pid)
        self._exit: asyncio.Future[None] | None = None

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        output: Path | int | None = None,
        input: bytes | None = None,
        own_group: bool = True,
    ) -> Child:
        """Start ``argv``; see the module docstring for ``env``, ``output`` and ``input``.

        ``output=None`` leaves the child this process's stdout and stderr.
        """
        stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
        full_env = None if env is None else {**os.environ, **env}
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(output, "ab")) if isinstance(output, Path) else output
            popen = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=out,
                stderr=None if out is None else subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=own_group,
            )
        child = cls(popen, name=name or Path(argv[0]).name, own_group=own_group)
        if input is not None:
            assert popen.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it died: its exit status tells
                popen.stdin.write(input)
            with contextlib.suppress(BrokenPipeError):
                popen.stdin.close()
        return child

    def __repr__(self) -> str:
        return f"<Child {self.name} pid={self.pid} returncode={self._popen.returncode}>"

    @property
    def pid(self) -> int:
        """Its process id (and process group id when :attr:`own_group`)."""
        return self._popen.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        """Its output, when started with ``output=subprocess.PIPE``."""
        return self._popen.stdout

    @property
    def returncode(self) -> int | None:
        """``None`` while it runs, else its exit status (negative: that signal). Never blocks.

        A child found to have exited is reaped here.
        """
        if self._popen.returncode is None and self._exited(0):
            self._reap()
        return self._popen.returncode

    @property
    def running(self) -> bool:
        """Whether it has not exited yet."""
        return self.returncode is None

    def signal(self, sig: int) -> bool:
        """Send ``sig`` (to its whole group when :attr:`own_group`); False if it is gone."""
        if self._popen.returncode is not None:
            return False  # reaped: its PID may belong to another process by now
        try:
            if self.own_group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it exits and return its status; :class:`StillRunning` on timeout."""
        if not self._exited(timeout):
            raise StillRunning(f"{self.name} (pid {self.pid}) still runs after {timeout}s")
        return self._reap()

    def stop(self, *, grace: float = 10.0, sig: int = SIGTERM) -> int:
        """Send ``sig``, wait up to ``grace`` seconds, then SIGKILL; return its exit status."""
        self.signal(sig)
        if not self._exited(grace):
            logger.warning("%s (pid %d) ignored %s for %ss: killing it", *self._late(sig, grace))
            self.signal(SIGKILL)
        return self._reap()

    def kill(self) -> int:
        """SIGKILL it (and its group) now; return its exit status."""
        self.signal(SIGKILL)
        return self._reap()

    async def wait_async(self, timeout: float | None = None) -> int:
        """:meth:`wait` without blocking the event loop."""
        if not await self._exited_async(timeout):
            raise StillRunning(f"{self.name} (pid {self.pid}) still runs after {timeout}s")
        return self._reap()

    async def stop_async(self, *, grace: float = 10.0, sig: int = SIGTERM) -> int:
        """:meth:`stop` without blocking the event loop."""
        self.signal(sig)
        if not await self._exited_async(grace):
            logger.warning("%s (pid %d) ignored %s for %ss: killing it", *self._late(sig, grace))
            self.signal(SIGKILL)
            await self._exited_async(None)
        return self._reap()

    def wait_for_port(self, port: int, *, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
        """Wait until something accepts TCP connections on ``host:port``.

        Raises :class:`Exited` if the child exits first, :class:`NotReady` on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            if (code := self.returncode) is not None:
                raise Exited(f"{self.name} exited with {code} before opening port {port}", code)
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise NotReady(f"{self.name}: port {port} not open after {timeout}s")
            time.sleep(_POLL)

    async def wait_for_port_async(
        self, port: int, *, host: str = "127.0.0.1", timeout: float = 20.0
    ) -> None:
        """:meth:`wait_for_port` without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            if (code := self.returncode) is not None:
                raise Exited(f"{self.name} exited with {code} before opening port {port}", code)
            try:
                async with asyncio.timeout(0.2):
                    _, writer = await asyncio.open_connection(host, port)
                writer.close()
                return
            except (OSError, TimeoutError):
                pass
            if time.monotonic() >= deadline:
                raise NotReady(f"{self.name}: port {port} not open after {timeout}s")
            await asyncio.sleep(_POLL)

    # -- waiting without reaping, so that its PID stays ours until _reap -----------------

    def _exited(self, timeout: float | None) -> bool:
        """Whether it exits within ``timeout`` seconds (``None``: wait for ever)."""
        if self._popen.returncode is not None:
            return True
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._popen.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    async def _exited_async(self, timeout: float | None) -> bool:
        if self._popen.returncode is not None:
            return True
        try:
            async with asyncio.timeout(timeout):
                if self._pidfd is None:
                    while self._popen.poll() is None:  # noqa: ASYNC110 (no pidfd to wait on)
                        await asyncio.sleep(_POLL)
                else:
                    await asyncio.shield(self._exit_future())
        except TimeoutError:
            return False
        return True

    def _exit_future(self) -> asyncio.Future[None]:
        """One future per child, done when it exits; shared by every waiting coroutine."""
        loop = asyncio.get_running_loop()
        if self._exit is None or self._exit.get_loop() is not loop:
            fd = self._pidfd
            assert fd is not None
            future = self._exit = loop.create_future()

            def ready() -> None:
                loop.remove_reader(fd)
                if not future.done():
                    future.set_result(None)

            loop.add_reader(fd, ready)
        return self._exit

    def _reap(self) -> int:
        """Collect its exit status; first kill what is left of its process group."""
        if self._popen.returncode is None:
            if self.own_group:
                # Not reaped yet, so its PID (the group id) cannot have been reused.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, SIGKILL)
            self._popen.wait()
        if self._pidfd is not None:
            if self._exit is not None and not self._exit.done():
                loop = self._exit.get_loop()
                if not loop.is_closed():
                    loop.remove_reader(self._pidfd)
                    self._exit.set_result(None)
            os.close(self._pidfd)
            self._pidfd = None
        code = self._popen.returncode
        assert code is not None
        return code

    def _late(self, sig: int, grace: float) -> tuple[str, int, str, float]:
        return self.name, self.pid, Signals(sig).name, grace


class Group:
    """Children started and stopped together. Use as a context manager (it stops them)."""

    def __init__(self, *, grace: float = 10.0) -> None:
        self.grace = grace
        """Seconds each child gets between SIGTERM and SIGKILL when the group is stopped."""
        self.stop_signal: Signals | None = None
        """The signal that :meth:`forward_signals` caught first, if any."""
        self.first_exit: Child | None = None
        """The child whose exit made :meth:`supervise` stop the others, if any."""
        self._children: list[Child] = []

    @property
    def children(self) -> tuple[Child, ...]:
        """Every child started so far, oldest first (the exited ones too)."""
        return tuple(self._children)

    @property
    def stopping(self) -> bool:
        """Whether a forwarded signal or a child's exit has begun stopping the group."""
        return self.stop_signal is not None or self.first_exit is not None

    def add(self, child: Child) -> Child:
        """Make ``child`` (just started) part of the group; return it.

        A child added after the group began stopping gets SIGTERM at once.
        """
        self._children.append(child)
        if self.stopping:
            child.signal(SIGTERM)
        return child

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every child still running, newest first."""
        for child in reversed(self._children):
            child.signal(sig)

    def stop(self, grace: float | None = None) -> list[int]:
        """Stop every child, newest first, one at a time; their statuses, oldest first.

        Each gets ``grace`` seconds (default :attr:`grace`) after SIGTERM. If stopping one
        raises (say Ctrl-C), the rest are killed before the exception goes on.
        """
        grace = self.grace if grace is None else grace
        try:
            for child in reversed(self._children):
                child.stop(grace=grace)
        except BaseException:
            for child in self._children:
                child.kill()
            raise
        return [child.wait() for child in self._children]  # all exited: no waiting

    async def stop_async(self, grace: float | None = None) -> list[int]:
        """:meth:`stop` without blocking the event loop."""
        grace = self.grace if grace is None else grace
        try:
            for child in reversed(self._children):
                await child.stop_async(grace=grace)
        except BaseException:
            for child in self._children:
                child.kill()
            raise
        return [child.wait() for child in self._children]

    @contextlib.contextmanager
    def forward_signals(
        self,
        signals: Sequence[Signals] = (SIGINT, SIGTERM),
        *,
        on_signal: Callable[[Signals], None] | None = None,
    ) -> Iterator[None]:
        """While inside, each of ``signals`` reaches every running child as SIGTERM.

        The first one sets :attr:`stop_signal` (and calls ``on_signal``); a second one is
        passed on too, which makes narun's programs skip their graceful drain. The previous
        handlers come back on exit. Main thread only.
        """

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.stop_signal is None:
                self.stop_signal = Signals(signum)
                if on_signal is not None:
                    on_signal(self.stop_signal)
            self.signal(SIGTERM)

        previous = {sig: signal.signal(sig, handle) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def supervise(
        self, *, grace: float | None = None, on_exit: Callable[[Child], None] | None = None
    ) -> Child | None:
        """Wait until every child has exited; return :attr:`first_exit`.

        The first child to exit while the group is not stopping becomes
        :attr:`first_exit` and the others get SIGTERM. Once the group is stopping, children
        still running after ``grace`` seconds (``None``: no limit) are killed.
        ``on_exit(child)`` is called once for each child as it is reaped (after
        :attr:`first_exit` is set).
        """
        reaped: set[Child] = set()
        deadline: float | None = None
        while True:
            for child in self._children:
                if child in reaped or child.returncode is None:
                    continue
                reaped.add(child)
                if not self.stopping:
                    self.first_exit = child
                    logger.debug("%s exited with %d: stopping the group", child, child.returncode)
                    self.signal(SIGTERM)
                if on_exit is not None:
                    on_exit(child)
            if len(reaped) == len(self._children):
                return self.first_exit
            if self.stopping and grace is not None:
                deadline = deadline or time.monotonic() + grace
                if time.monotonic() >= deadline:
                    self.signal(SIGKILL)
            time.sleep(_POLL)

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
