"""What /metrics reports beyond requests: database pool, password hashing, rate limiter, cache and outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import outbox
from .cache import CACHE, MISSES_PER_HIT
from .db import POOL
from .passwords import PASSWORDS
from .ratelimit import LIMITER

if TYPE_CHECKING:
    from .metrics import Metrics


def _pool_waiters(pool) -> int:
    # asyncpg has no public count of callers waiting in acquire(); they are the futures parked in its
    # connection queue's getters (an asyncio.Queue). Read defensively: internals may change.
    getters = getattr(getattr(pool, "_queue", None), "_getters", ())
    return sum(1 for waiter in getters if not waiter.done())


def register_sources(app: web.Application, metrics: Metrics) -> None:
    """Gauges and counters of the pools, the rate limiter, the response cache and the outbox, from live state."""
    size = metrics.gauge("db_pool_size", "PostgreSQL connections open in the pool")
    idle = metrics.gauge("db_pool_idle", "PostgreSQL connections open and idle")
    waiters = metrics.gauge("db_pool_waiters", "Requests waiting for a PostgreSQL connection")
    hashing = metrics.gauge("password_hash_in_use", "Password hashes being computed or waiting for a thread")

    def collect_pools() -> None:
        pool = app.get(POOL)
        pool = getattr(pool, "raw", pool)  # server/db.py's Pool wraps asyncpg's
        if pool is not None:
            size.set(pool.get_size())
            idle.set(pool.get_idle_size())
            waiters.set(_pool_waiters(pool))
        passwords = app.get(PASSWORDS)
        if passwords is not None:
            hashing.set(passwords.in_use)

    metrics.register_collector(collect_pools)

    # The limiter and the cache keep plain ints on their hot paths; counters advance by the difference here.
    counts = [(LIMITER, "refused", metrics.counter("rate_limit_rejections_total", "Requests refused with 429")),
              (LIMITER, "fallbacks", metrics.counter(
                  "rate_limit_fallback_decisions_total", "Rate-limit decisions taken in-process while Redis was away")),
              (CACHE, "hits", metrics.counter("cache_hits_total", "Public reads answered from the response cache")),
              (CACHE, "misses", metrics.counter("cache_misses_total", "Public reads the cache did not hold")),
              (CACHE, "rebuilds", metrics.counter("cache_rebuilds_total", "Cache entries built by this process")),
              (CACHE, "waits", metrics.counter(
                  "cache_waits_total", "Misses that waited for another request's rebuild (single flight)")),
              (CACHE, "bypasses", metrics.counter("cache_bypasses_total", "Reads served without the cache (Redis away)")),
              (CACHE, "skips", metrics.counter(
                  "cache_skips_total", "Reads served without the cache because its lookups for that policy "
                  f"missed more than {MISSES_PER_HIT} times per hit"))]
    seen = [0] * len(counts)
    breaker = metrics.gauge("redis_breaker_open", "1 while the Redis circuit breaker is open", mode="livemax")

    def collect_counts() -> None:
        for i, (key, attribute, counter) in enumerate(counts):
            if (source := app.get(key)) is not None:
                value = getattr(source, attribute)
                counter.inc(value - seen[i])
                seen[i] = value
        if (limiter := app.get(LIMITER)) is not None:
            breaker.set(0 if limiter.breaker.state == "closed" else 1)

    metrics.register_collector(collect_counts)

    backlog = metrics.gauge("outbox_backlog", "Events waiting for a delivery", mode="mostrecent")
    oldest = metrics.gauge("outbox_oldest_pending_age_seconds", "Age of the oldest event waiting for a delivery",
                           mode="mostrecent")
    dead = metrics.gauge("outbox_dead_letters", "Events with a delivery that ran out of attempts", mode="mostrecent")

    async def collect_outbox() -> None:  # rows every process sees alike: one query, by the scraped process
        if (pool := app.get(POOL)) is not None:
            stats = await outbox.stats(pool)
            backlog.set(stats["backlog"])
            oldest.set(float(stats["oldest_pending_age"] or 0))
            dead.set(stats["dead_letters"])

    metrics.register_collector(collect_outbox, shared=True)
