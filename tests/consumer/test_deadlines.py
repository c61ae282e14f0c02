"""DeadlineWheel: one timer for many deadlines, with asyncio.timeout's semantics."""

from __future__ import annotations

import asyncio

import pytest

from narun.consumer.deadlines import DeadlineWheel


async def test_work_that_finishes_in_time_is_untouched() -> None:
    wheel = DeadlineWheel(resolution=0.01)
    with wheel.after(1) as deadline:
        await asyncio.sleep(0.01)
    assert not deadline.expired
    assert wheel.pending == 0


async def test_overrun_raises_timeout_error_not_early_and_not_much_late() -> None:
    wheel = DeadlineWheel(resolution=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), wheel.after(0.05) as deadline:
        await asyncio.sleep(5)
    took = loop.time() - started
    assert deadline.expired
    assert 0.05 <= took < 0.5
    # The task is not left cancelled: it goes on normally.
    await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_many_deadlines_share_one_timer_and_each_fires_for_its_own_task() -> None:
    wheel = DeadlineWheel(resolution=0.01)

    async def job(budget: float, work: float) -> str:
        try:
            with wheel.after(budget):
                await asyncio.sleep(work)
        except TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(job(0.05, 1), job(1, 0.01), job(0.02, 1), job(2, 0.1), job(0, 1))
    assert list(results) == ["timeout", "done", "timeout", "done", "timeout"]
    assert wheel.pending == 0
    await asyncio.sleep(0.05)
    assert wheel._timer is None  # idle: no timer left running


async def test_an_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    wheel = DeadlineWheel(resolution=0.01)
    started = asyncio.Event()

    async def job() -> None:
        with wheel.after(10):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(job())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wheel.pending == 0


async def test_cancelled_by_both_the_deadline_and_someone_else_stays_cancelled() -> None:
    wheel = DeadlineWheel(resolution=0.01)

    async def job() -> None:
        with wheel.after(0.02):
            try:
                await asyncio.sleep(10)
            finally:
                # The deadline fired; now the owner cancels too, before we resume.
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(job())


async def test_an_app_that_swallows_the_cancellation_returns_normally() -> None:
    wheel = DeadlineWheel(resolution=0.01)

    async def job() -> str:
        with wheel.after(0.02):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "swallowed"
        return "finished"

    task = asyncio.create_task(job())
    assert await task == "swallowed"
    assert task.cancelling() == 0


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resolution"):
        DeadlineWheel(resolution=0)


def test_a_deadline_needs_a_task() -> None:
    wheel = DeadlineWheel()
    with pytest.raises(RuntimeError), wheel.after(1):
        pass


def test_a_wheel_finds_the_current_task_on_each_loop_it_is_used_from() -> None:
    wheel = DeadlineWheel()

    async def inside() -> bool:
        return wheel.current_task() is asyncio.current_task()

    # The wheel keeps the loop of its last use; a new loop must still be found.
    assert asyncio.run(inside())
    assert asyncio.run(inside())
