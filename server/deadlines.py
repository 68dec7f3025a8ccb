"""Deadlines for every request at the cost of a set entry each, rather than a timer each.

`asyncio.timeout` arms a loop timer on entry and cancels it on exit: about 8 µs per request here
(measured on the bare baseline: 69 -> 77 µs of CPU per request with one around each handler). These
deadlines are checked by one watcher task per loop every RESOLUTION seconds instead, which is precise
enough for bounds of a second and more; what a deadline does when it passes is what asyncio.timeout
does: the task is cancelled, and the `with` block turns that cancellation into TimeoutError.
"""

from __future__ import annotations

import asyncio

RESOLUTION = 0.05  # seconds between two checks: a deadline passes up to this late
# Checks that find nothing to watch before the watcher ends (the next deadline starts another). Not one:
# a block that never waits (a 404, /healthz) is over before the watcher's first check, and a watcher that
# ended there would cost each such request a task of its own (perf/README.md, "What our layers cost").
IDLE_CHECKS = 4


class _Limit:
    __slots__ = ("task", "deadline", "cancelling", "fired", "owner")

    def __init__(self, owner: Deadlines, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.owner = owner
        self.task = asyncio.current_task(loop)
        self.deadline = loop.time() + seconds
        self.fired = False

    def __enter__(self) -> _Limit:
        self.cancelling = self.task.cancelling()
        owner = self.owner
        owner.entries.add(self)
        if owner.watcher is None or owner.watcher.done():
            owner.watcher = self.task.get_loop().create_task(owner.watch())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.owner.entries.discard(self)
        # As asyncio.timeout: our cancellation, and no other pending, becomes TimeoutError.
        if self.fired and self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class Deadlines:
    def __init__(self) -> None:
        self.entries: set[_Limit] = set()
        self.watcher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def limit(self, seconds: float) -> _Limit:
        """`with deadlines.limit(s):` raises TimeoutError in the block once it has run s seconds."""
        # The loop is kept: on Python 3.11 each asyncio.get_running_loop() (current_task() without a loop
        # too) is a getpid() system call.
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return _Limit(self, loop, seconds)

    async def watch(self) -> None:
        """Cancels the tasks whose deadline passed; started by the first deadline, and again after it ended."""
        loop = asyncio.get_running_loop()
        idle = 0
        while idle < IDLE_CHECKS:  # ends when nothing had a deadline for a while; the next one starts it again
            await asyncio.sleep(RESOLUTION)
            if not self.entries:
                idle += 1
                continue
            idle = 0
            now = loop.time()
            for limit in [e for e in self.entries if e.deadline <= now and not e.fired]:
                limit.fired = True
                limit.task.cancel()
