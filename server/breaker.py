"""A circuit breaker for Redis: a hard timeout per call, open after consecutive failures, one probe to close.

Every Redis use on the request path goes through one Breaker per process (rate limiter, response cache),
so that a dead or frozen Redis costs each request at most `timeout`, and, once the breaker is open, nothing:
callers catch RedisUnavailable and degrade (per-process limits, cache bypassed).

    closed ──`failures` consecutive failures──▶ open ──`reset` seconds──▶ half-open (one probe in flight)
      ▲                                                                      │ success        │ failure
      └──────────────────────────────────────────────────────────────────────┘                ▼
                                                                                     open again for `reset`
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger("server.breaker")

T = TypeVar("T")

# What a Redis outage looks like: redis-py's errors (connection refused or reset, socket timeouts, LOADING,
# OOM, READONLY...), plain socket errors, and our own deadline.
FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class RedisUnavailable(Exception):
    """Redis failed, did not answer within the timeout, or the breaker is open: degrade instead."""


class Breaker:
    def __init__(self, *, timeout: float, failures: int, reset: float, name: str = "redis",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout  # seconds one call may take, pool wait, connect and reply together
        self.threshold = failures
        self.reset = reset
        self.name = name
        self._clock = clock
        self._failures = 0  # consecutive
        self._opened_at: float | None = None  # None while closed
        self._probing = False
        # Counters for the metrics endpoint.
        self.opened_total = 0
        self.rejected_total = 0  # calls answered at once, without asking Redis

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    @property
    def blocked(self) -> bool:
        """Whether a call now would be refused without trying Redis (open, and no probe due)."""
        return self._opened_at is not None and (self._probing or self._clock() - self._opened_at < self.reset)

    async def call(self, fn: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
        """`await fn(*args, **kwargs)` within the timeout; RedisUnavailable when it fails or may not run."""
        probe = False
        if self._opened_at is not None:
            if self.blocked:
                self.rejected_total += 1
                raise RedisUnavailable(f"{self.name}: circuit open")
            self._probing = probe = True
        try:
            # redis-py's own socket timeouts are set to the same value, but a call can wait for a pooled
            # connection, then connect, then read: this deadline bounds the sum.
            async with asyncio.timeout(self.timeout):
                result = await fn(*args, **kwargs)
        except FAILURES as exc:
            self._failed(exc, probe)
            raise RedisUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        except BaseException:
            if probe:  # cancelled with the request: the next caller probes instead
                self._probing = False
            raise
        self._succeeded()
        return result

    def _failed(self, exc: BaseException, probe: bool) -> None:
        self._failures += 1
        if probe or (self._opened_at is None and self._failures >= self.threshold):
            if self._opened_at is None:
                self.opened_total += 1
                log.warning("%s circuit opened after %d consecutive failures (last: %s); retrying in %.1f s",
                            self.name, self._failures, type(exc).__name__, self.reset)
            self._opened_at = self._clock()
            self._probing = False

    def _succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("%s circuit closed: %s answers again", self.name, self.name)
        self._failures = 0
        self._opened_at = None
        self._probing = False
