"""Request deadlines that share one loop timer: a coarse timer wheel.

``asyncio.timeout`` arms and cancels a loop timer for every request, which costs more
than the small requests it guards. A :class:`DeadlineWheel` files each deadline in a
slot of ``resolution`` seconds and, while any deadline is pending, wakes once per slot.
A deadline fires at most about one ``resolution`` late, never early; its context
manager otherwise behaves like ``asyncio.timeout``: the task is cancelled and the
``with`` block raises :class:`TimeoutError` (unless someone else cancelled it too).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

__all__ = ["Deadline", "DeadlineWheel"]


class Deadline:
    """One pending deadline; a context manager made by :meth:`DeadlineWheel.after`."""

    __slots__ = ("_cancelling", "_seconds", "_slot", "_task", "_wheel", "expired")

    def __init__(self, wheel: DeadlineWheel, seconds: float) -> None:
        self._wheel = wheel
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._slot = 0
        self._cancelling = 0
        self.expired = False
        """True once the deadline has passed and the task was cancelled for it."""

    def __enter__(self) -> Deadline:
        task = self._wheel.current_task()
        if task is None:
            raise RuntimeError("a Deadline must be entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._wheel._add(self, task.get_loop())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._wheel._remove(self)
        if self.expired:
            assert self._task is not None
            # As asyncio.timeout: the cancellation was ours alone if no other is pending.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def disarm(self) -> None:
        """Never expire (a stream's head was sent: its idle timeout applies from now)."""
        if not self.expired:
            self._wheel._remove(self)

    def _expire(self) -> None:
        assert self._task is not None
        self.expired = True
        self._task.cancel()


class DeadlineWheel:
    """Cancels tasks whose deadline passed, with one loop timer for all of them."""

    def __init__(self, *, resolution: float = 0.005) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.resolution = resolution
        self._slots: dict[int, set[Deadline]] = {}
        self._next = 0
        """The first slot not expired yet (valid while the timer runs)."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the last deadline: ``asyncio.current_task()`` without it asks for
        the running loop, a ``getpid()`` system call on Python 3.11."""

    def current_task(self) -> asyncio.Task[object] | None:
        """``asyncio.current_task()``, with the loop kept from the last call."""
        loop = self._loop
        task = None if loop is None else asyncio.current_task(loop)
        if task is None:
            loop = self._loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
        return task

    def after(self, seconds: float) -> Deadline:
        """A context manager that cancels the current task once ``seconds`` have passed."""
        return Deadline(self, seconds)

    @property
    def pending(self) -> int:
        """Deadlines armed and not yet passed or left."""
        return sum(len(slot) for slot in self._slots.values())

    def _add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        # The first slot that starts at or after the deadline (so never early), and
        # at least the next slot to come (so a deadline of zero is not missed).
        slot = max(
            math.ceil((now + deadline._seconds) / self.resolution),
            math.floor(now / self.resolution) + 1,
        )
        deadline._slot = slot
        members = self._slots.get(slot)
        if members is None:
            self._slots[slot] = members = set()
        members.add(deadline)
        if self._timer is None:
            self._next = math.floor(now / self.resolution) + 1
            self._timer = loop.call_at(self._next * self.resolution, self._tick, loop)

    def _remove(self, deadline: Deadline) -> None:
        members = self._slots.get(deadline._slot)
        if members is not None:
            members.discard(deadline)
            if not members:
                del self._slots[deadline._slot]

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        current = math.floor(loop.time() / self.resolution)
        for slot in range(self._next, current + 1):
            members = self._slots.pop(slot, None)
            if members:
                for deadline in members:
                    deadline._expire()
        self._next = max(self._next, current + 1)
        if self._slots:
            self._timer = loop.call_at(self._next * self.resolution, self._tick, loop)
        else:
            self._timer = None
