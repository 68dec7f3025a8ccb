"""server/deadlines.py: what asyncio.timeout does, checked by one watcher instead of a timer each."""

from __future__ import annotations

import asyncio
import time

import pytest

from server import deadlines
from server.deadlines import Deadlines


async def test_a_block_past_its_deadline_raises_timeout_error_soon_after():
    limits = Deadlines()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with limits.limit(0.1):
            await asyncio.sleep(5)
    assert 0.1 <= time.monotonic() - started < 0.1 + 3 * deadlines.RESOLUTION
    assert not limits.entries and asyncio.current_task().cancelling() == 0


async def test_a_block_in_time_is_left_alone_and_the_watcher_stops():
    limits = Deadlines()
    with limits.limit(1):
        await asyncio.sleep(0.01)
    assert not limits.entries
    await asyncio.sleep((deadlines.IDLE_CHECKS + 2) * deadlines.RESOLUTION)
    assert limits.watcher.done()  # nothing to watch for a while: no task left behind
    with pytest.raises(TimeoutError):  # and the next deadline starts it again
        with limits.limit(0.05):
            await asyncio.sleep(1)


async def test_blocks_that_never_wait_share_one_watcher():
    """A request that never waits (a 404, /healthz) is over before the watcher first looks: the watcher
    stays for the next ones instead of ending, and each of them starting a task of its own."""
    limits = Deadlines()
    watchers = set()
    for _ in range(20):
        with limits.limit(1):
            pass
        watchers.add(limits.watcher)
        await asyncio.sleep(0)  # the watcher's turn: it finds nothing to watch
    assert len(watchers) == 1


async def test_nested_deadlines_each_raise_their_own_timeout_and_other_cancellations_pass():
    limits = Deadlines()
    with limits.limit(5):  # outer, not reached
        with pytest.raises(TimeoutError):
            with limits.limit(0.05):
                await asyncio.sleep(5)
        await asyncio.sleep(0)  # the outer block goes on undisturbed
    task = asyncio.ensure_future(_sleep_within(limits, 5))
    await asyncio.sleep(0.01)
    task.cancel()  # someone else's cancellation stays a cancellation
    with pytest.raises(asyncio.CancelledError):
        await task


async def _sleep_within(limits: Deadlines, seconds: float) -> None:
    with limits.limit(seconds):
        await asyncio.sleep(10)


async def test_many_tasks_each_get_their_own_deadline():
    limits = Deadlines()

    async def one(limit: float) -> str:
        try:
            with limits.limit(limit):
                await asyncio.sleep(0.3)
            return "done"
        except TimeoutError:
            return "timed out"

    results = await asyncio.gather(*(one(limit) for limit in [0.1, 1, 0.1, 1]))
    assert results == ["timed out", "done", "timed out", "done"]
