"""The transactional outbox: emit() inside the writer's transaction; claiming, outcomes, dead letters, stats."""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Iterable

import asyncpg
import orjson

from .db import Pool, Q, transaction

CHANNEL = "outbox"  # the LISTEN/NOTIFY channel that wakes workers
STATUSES = ("pending", "delivered", "dead")
MAX_ID = 2**63 - 1

# Who receives each event type. Delivery rows are made at emit time, so every consumer of an event is
# tracked on its own: a failing one neither holds back nor repeats the others.
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "user.created": ("stream", "welcome_mail"),
    "post.created": ("stream",),
    "comment.created": ("stream", "comment_mail"),
}


async def emit(conn: asyncpg.Connection, type: str, data: dict, request_id: str | None) -> int:
    """Write the event in the caller's transaction (same connection) and return its id.

    Once that transaction has committed, the caller wakes the workers with wake(); without it they find
    the event at their next poll.
    """
    consumers = SUBSCRIPTIONS.get(type)
    if consumers is None:
        raise ValueError(f"unknown event type {type!r}")
    row = await conn.fetchrow(Q.emit_event, type, data, request_id, list(consumers))
    return row["id"]


def wake(pool: Pool) -> None:
    """Tell the workers that events were committed: a NOTIFY sent after the commit, coalesced with those of
    other writes (Pool.notify says why not inside the transaction)."""
    pool.notify(CHANNEL)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One claimed (event, consumer) pair."""

    id: int
    type: str
    data: dict
    request_id: str | None
    occurred_at: datetime.datetime
    consumer: str
    attempts: int  # including this one

    def payload(self) -> dict:
        """The event as API.md's "Events" publishes it."""
        return {"id": self.id, "type": self.type, "occurredAt": self.occurred_at, "requestId": self.request_id,
                "data": self.data}

    def payload_json(self) -> bytes:
        return orjson.dumps(self.payload(), option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


async def claim(pool: asyncpg.Pool, limit: int, lease: float) -> list[Delivery]:
    rows = await pool.fetch(Q.claim_deliveries, limit, lease)
    return [Delivery(r["id"], r["type"], r["data"], r["request_id"], r["occurred_at"], r["consumer"], r["attempts"])
            for r in rows]


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failures: doubling from `base` up to `cap`, with
    "equal jitter" (between half and all of it), so workers that failed together do not retry together.
    """
    delay = min(cap, base * 2 ** min(attempts - 1, 62))
    return delay / 2 + random.uniform(0, delay / 2)


async def mark_delivered(pool: asyncpg.Pool, consumer: str, ids: Iterable[int]) -> None:
    if ids := list(ids):
        await pool.execute(Q.mark_delivered, consumer, ids)


async def mark_failed(pool: asyncpg.Pool, consumer: str, failures: list[tuple[Delivery, str]], *,
                      max_attempts: int, base: float, cap: float) -> list[int]:
    """Schedule the retries, or make dead letters of the deliveries out of attempts; returns the dead ids."""
    if not failures:
        return []
    rows = await pool.fetch(Q.mark_failed, consumer, max_attempts, [d.id for d, _ in failures],
                            [error[:2000] for _, error in failures],
                            [backoff(d.attempts, base, cap) for d, _ in failures])
    return [r["event_id"] for r in rows if r["status"] == "dead"]


async def release(pool: asyncpg.Pool, consumer: str, ids: Iterable[int]) -> None:
    if ids := list(ids):
        await pool.execute(Q.release_deliveries, consumer, ids)


async def hasten(pool: asyncpg.Pool, consumer: str, attempts: dict[int, int]) -> int:
    """Make due now the deliveries in `attempts` (event id -> attempts when they failed) that nobody
    claimed since; returns how many."""
    if not attempts:
        return 0
    status = await pool.execute(Q.hasten_deliveries, consumer, list(attempts), list(attempts.values()))
    return int(status.split()[-1])


async def next_due_in(pool: asyncpg.Pool) -> float | None:
    """Seconds until the next pending delivery is due (≤ 0: now); None when nothing is pending."""
    return await pool.fetchval(Q.next_due_in)


async def redeliver(pool: asyncpg.Pool, event_id: int) -> str:
    """Put a dead event back in the queue: "redelivered", "not_dead" or "missing".

    Only its dead deliveries go back, with their attempts reset; consumers that succeeded are not repeated.
    """
    async with transaction(pool) as conn:
        if await conn.fetch(Q.redeliver_event, event_id):
            await conn.execute(Q.notify_outbox)
            return "redelivered"
        return "not_dead" if await conn.fetchval(Q.event_exists, event_id) else "missing"


async def redeliver_all(pool: asyncpg.Pool) -> int:
    """Every dead letter back in the queue; returns how many events."""
    async with transaction(pool) as conn:
        rows = await conn.fetch(Q.redeliver_all)
        await conn.execute(Q.notify_outbox)
    return len({r["event_id"] for r in rows})


async def stats(pool: asyncpg.Pool) -> dict:
    """Events waiting for a delivery, the age of the oldest in seconds, and events with a dead letter."""
    row = await pool.fetchrow(Q.outbox_stats)
    return {"backlog": row["backlog"], "oldest_pending_age": row["oldest_pending_age"],
            "dead_letters": row["dead_letters"]}


async def prune(pool: asyncpg.Pool, days: int, batch: int = 10_000) -> int:
    """Delete up to `batch` fully delivered events older than `days`, then their orphaned mail keys."""
    status = await pool.execute(Q.prune_events, days, batch)
    await pool.execute(Q.prune_mail_keys, days)
    return int(status.split()[-1])


async def list_events(pool: asyncpg.Pool, status: str | None, limit: int,
                      before: int | None = None) -> tuple[list[dict], int, bool]:
    """The admin's view, newest first: (events, total of the filter, whether more follow)."""
    query = Q["list_events_" + (status or "all")]
    rows = await pool.fetch(query, limit + 1, before or MAX_ID)  # one more row tells if a next page exists
    events = [r for r in rows[:limit] if r["id"] is not None]
    return await _views(pool, events), rows[0]["total"], len(rows) > limit


async def get_event(pool: asyncpg.Pool, event_id: int) -> dict | None:
    row = await pool.fetchrow(Q.get_event, event_id)
    return (await _views(pool, [row]))[0] if row else None


async def _views(pool: asyncpg.Pool, events: list) -> list[dict]:
    deliveries: dict[int, list] = {}
    for d in await pool.fetch(Q.event_deliveries, [e["id"] for e in events]) if events else ():
        deliveries.setdefault(d["event_id"], []).append(d)
    return [_view(e, deliveries.get(e["id"], [])) for e in events]


def _view(event, deliveries: list) -> dict:
    states = {d["status"] for d in deliveries}
    status = "dead" if "dead" in states else "pending" if "pending" in states else "delivered"
    failed = [d for d in deliveries if d["last_error"]]
    last = max(failed, key=lambda d: d["updated_at"])["last_error"] if failed else None
    return {
        "id": event["id"], "type": event["type"], "occurredAt": event["occurred_at"],
        "requestId": event["request_id"], "data": event["data"], "status": status,
        # The most any consumer needed: 1 for an event every consumer took at the first try.
        "attempts": max((d["attempts"] for d in deliveries), default=0), "lastError": last,
        "deliveries": [{"consumer": d["consumer"], "status": d["status"], "attempts": d["attempts"],
                        "lastError": d["last_error"], "deliveredAt": d["delivered_at"],
                        "nextAttemptAt": d["next_attempt_at"] if d["status"] == "pending" else None}
                       for d in deliveries],
    }
