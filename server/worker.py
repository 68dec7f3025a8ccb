"""The outbox worker: claims due deliveries in batches, hands them to consumers, records what happened."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as redis
from aiohttp import web

from . import outbox
from .config import Config
from .consumers import Outcome, default_consumers, describe
from .db import CONFIG, POOL, create_pool
from .redisdb import REDIS, create_client

log = logging.getLogger("server.worker")

PRUNE_EVERY = 3600.0  # seconds between two clean-ups of old delivered events by one worker
LEASE_MARGIN = 0.8  # stop starting deliveries after this share of the lease, so none outlives it


class Worker:
    """One loop: claim up to a batch, deliver per consumer concurrently, record, then wait for a
    notification, the next due retry or the poll interval, whichever comes first. stop() lets the
    current batch finish."""

    def __init__(self, config: Config, pool: asyncpg.Pool, client: redis.Redis, consumers: dict | None = None):
        self.config, self.pool = config, pool
        self.consumers = consumers if consumers is not None else default_consumers(config, pool, client)
        self._wake = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._pruned_at = -PRUNE_EVERY

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        log.info("outbox worker started (batch %d)", self.config.outbox_batch_size)
        failures = 0
        try:
            while not self._stopping:
                try:
                    await self._ensure_listener()
                    count = await self.run_once()
                    failures = 0
                    if count < self.config.outbox_batch_size:
                        await self._idle()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                    # PostgreSQL away: nothing is lost (the events are in it); try again, less and less often.
                    failures += 1
                    log.warning("outbox worker: %s", describe(exc))
                    await self._sleep(min(self.config.outbox_poll_interval, 0.1 * 2 ** failures))
        finally:
            if self._listener is not None:
                await self._listener.close(timeout=2)
            log.info("outbox worker stopped")

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many deliveries were claimed."""
        self._wake.clear()  # a notification from here on wakes the next wait
        deadline = time.monotonic() + self.config.outbox_lease * LEASE_MARGIN
        claimed = await outbox.claim(self.pool, self.config.outbox_batch_size, self.config.outbox_lease)
        groups: dict[str, list[outbox.Delivery]] = {}
        for d in claimed:
            groups.setdefault(d.consumer, []).append(d)
        # Consumers run side by side; all of them finish (and record) before a failure is raised.
        results = await asyncio.gather(*(self._deliver(name, batch, deadline) for name, batch in groups.items()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(claimed)

    async def _deliver(self, name: str, batch: list[outbox.Delivery], deadline: float) -> None:
        consumer = self.consumers.get(name)
        try:
            outcome = await consumer.deliver(batch, deadline) if consumer else \
                Outcome(failed=[(d, f"no consumer named {name!r} in this worker") for d in batch])
        except Exception as exc:  # noqa: BLE001 - a consumer's bug fails its deliveries, not the worker
            log.exception("consumer %s failed", name)
            outcome = Outcome(failed=[(d, describe(exc)) for d in batch])
        # Recorded as soon as this consumer is done: the window in which a crash repeats a delivery is
        # this one statement's round trip (the mail consumers also keep their own keys).
        await outbox.mark_delivered(self.pool, name, outcome.delivered)
        await outbox.release(self.pool, name, outcome.released)
        for d, error in outcome.failed:
            log.warning("event %d to %s failed (attempt %d): %s", d.id, name, d.attempts, error,
                        extra={"event_id": d.id, "consumer": name, "request_id": d.request_id})
        dead = await outbox.mark_failed(self.pool, name, outcome.failed, max_attempts=self.config.outbox_max_attempts,
                                        base=self.config.outbox_backoff_base, cap=self.config.outbox_backoff_max)
        for event_id in dead:
            log.error("event %d to %s is a dead letter after %d attempts", event_id, name,
                      self.config.outbox_max_attempts, extra={"event_id": event_id, "consumer": name})

    async def _idle(self) -> None:
        await self._maybe_prune()
        due = await outbox.next_due_in(self.pool)
        wait = self.config.outbox_poll_interval if due is None else min(self.config.outbox_poll_interval, due)
        if wait > 0:
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _ensure_listener(self) -> None:
        """LISTEN on a connection of its own (a pooled one would lose it); polling covers any gap."""
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = await asyncpg.connect(self.config.database_url, timeout=5)
        await self._listener.add_listener(outbox.CHANNEL, lambda *_: self._wake.set())
        self._wake.set()  # anything emitted while no one listened is claimed now

    async def _maybe_prune(self) -> None:
        if not self.config.outbox_retention_days or time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = time.monotonic()
        if removed := await outbox.prune(self.pool, self.config.outbox_retention_days):
            log.info("pruned %d delivered events", removed)


WORKER = web.AppKey("worker", Worker)


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker inside `serve` (the embedded mode), on the app's pool and Redis client."""
    worker = app[WORKER] = Worker(app[CONFIG], app[POOL], app[REDIS])
    task = asyncio.create_task(worker.run())
    yield
    worker.stop()
    try:
        await asyncio.wait_for(task, app[CONFIG].outbox_lease)
    except asyncio.TimeoutError:
        log.warning("outbox worker did not finish its batch in time; its deliveries return after the lease")


async def run_worker(config: Config) -> None:
    """`python -m server worker`: until SIGTERM or SIGINT, which let the current batch finish."""
    # A worker needs a handful of connections: the claim, the records, one per mail being sent.
    pool = await create_pool(dataclasses.replace(config, pg_pool_min=1, pg_pool_max=min(config.pg_pool_max, 8)))
    client = create_client(config.redis_url, 8)
    worker = Worker(config, pool, client)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()
        await pool.close()


async def redeliver_cli(config: Config, event_ids: list[int], every: bool) -> int:
    """`python -m server redeliver EVENT_ID... | --all`: prints what happened; 1 if an id was not dead."""
    pool = await create_pool(dataclasses.replace(config, pg_pool_min=1, pg_pool_max=2))
    try:
        if every:
            print(f"{await outbox.redeliver_all(pool)} dead events back in the queue")
            return 0
        code = 0
        for event_id in event_ids:
            result = await outbox.redeliver(pool, event_id)
            print(f"event {event_id}: " + {"redelivered": "back in the queue", "not_dead": "not a dead letter",
                                             "missing": "no such event"}[result])
            code = code or int(result != "redelivered")
        return code
    finally:
        await pool.close()
