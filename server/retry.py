"""Writes that PostgreSQL aborted to break a deadlock (or a serialization failure) run again, whole."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

log = logging.getLogger("server.retry")
T = TypeVar("T")

# The API's own writes take their locks in one order (migration 0003) and do not deadlock each other;
# an outside writer's multi-statement transaction can take them in another. PostgreSQL then aborts one
# of the two after deadlock_timeout (1 s by default); when that is ours, the whole transaction runs
# again. Three attempts: a second deadlock in a row is rare, a third would mean a pathological writer.
ATTEMPTS = 3
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


async def retrying(write: Callable[[], Awaitable[T]]) -> T:
    """`await write()`, again after a deadlock or serialization failure; `write` must open its own transaction."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await write()
        except RETRYABLE as exc:
            if attempt == ATTEMPTS:
                raise
            log.warning("write aborted by PostgreSQL (%s), attempt %d of %d", type(exc).__name__, attempt, ATTEMPTS)
    raise AssertionError("unreachable")
