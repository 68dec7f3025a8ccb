"""Shared by the outbox tests: a real SMTP server (aiosmtpd), clean outbox tables, workers, helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import threading
import time

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from server import outbox
from server.db import Q, create_pool, transaction
from server.embedded import free_port
from server.redisdb import create_client
from server.worker import Worker

OUTBOX_TABLES = "outbox_events, outbox_deliveries, mail_sent"
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"  # never verified


class Inbox:
    """An aiosmtpd handler keeping every accepted message; `refuse` answers DATA with that reply."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: str | None = None
        self.refused = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refused += 1
            return self.refuse
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self.messages if address in m["To"]]


def start_smtp(handler, **kwargs) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def inbox():
    handler = Inbox()
    controller = start_smtp(handler)
    handler.url = f"smtp://127.0.0.1:{controller.port}"
    yield handler
    controller.stop()


@pytest.fixture
async def outbox_db(db):
    """`db`, with the outbox and the mail keys emptied too."""
    await db.execute(f"TRUNCATE {OUTBOX_TABLES} RESTART IDENTITY CASCADE")
    return db


@pytest.fixture
def events_config(make_config, inbox):
    """Fast retries and short waits, mail to the test's SMTP server."""
    return make_config(smtp_url=inbox.url, outbox_backoff_base=0.05, outbox_backoff_max=0.2, outbox_max_attempts=3,
                       outbox_poll_interval=0.2, outbox_lease=5.0)


@pytest.fixture
async def make_worker(events_config):
    """make_worker(**config changes) -> a Worker on its own pool and Redis client, closed afterwards."""
    opened = []

    async def make(config=None, redis_url=None, **changes) -> Worker:
        config = dataclasses.replace(config or events_config, **changes)
        pool = await create_pool(config)
        client = create_client(redis_url or config.redis_url, 4)
        opened.append((pool, client))
        return Worker(config, pool, client)

    yield make
    for pool, client in opened:
        await client.aclose()
        await client.connection_pool.disconnect()
        await pool.close()


async def drain(*workers: Worker, wait_up_to: float = 1.0, timeout: float = 30.0) -> list[int]:
    """Run the workers' batches side by side until nothing is due within `wait_up_to` seconds; returns
    how many deliveries each worker claimed."""
    deadline = time.monotonic() + timeout
    claimed = [0] * len(workers)
    while time.monotonic() < deadline:
        counts = await asyncio.gather(*(w.run_once() for w in workers))
        claimed = [a + b for a, b in zip(claimed, counts)]
        if any(counts):
            continue
        due = await outbox.next_due_in(workers[0].pool)
        if due is None or due > wait_up_to:
            return claimed
        await asyncio.sleep(max(due, 0.01))
    raise AssertionError("the outbox did not drain in time")


async def create_user(pool: asyncpg.Pool, username: str, request_id: str | None = None) -> int:
    """What the sign-up handler does after hashing: the user and its event in one transaction."""
    async with transaction(pool) as conn:
        row = await conn.fetchrow(Q.insert_user, f"{username}@example.com", username, HASH, username.title(), "")
        await outbox.emit(conn, "user.created", {"userId": row["id"]}, request_id)
    outbox.wake(pool)
    return row["id"]


async def statuses(conn) -> dict:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM outbox_deliveries GROUP BY status")
    return {r["status"]: r["n"] for r in rows}
