"""`python -m server worker` as its own process: SIGKILL at random points, SIGTERM, the redeliver CLI."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from server import outbox
from server.db import create_pool
from tests.outbox_kit import create_user, inbox, outbox_db, statuses  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SIGN_UPS = 500
KILLS = 4


def _env(base_config, inbox, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOX_", "SMTP_", "MAIL_"))}
    env.update(DATABASE_URL=base_config.database_url, REDIS_URL=base_config.redis_url, SMTP_URL=inbox.url,
               LOG_LEVEL="warning", OUTBOX_LEASE="1", OUTBOX_POLL_INTERVAL="0.2", OUTBOX_BACKOFF_BASE="0.05",
               OUTBOX_BACKOFF_MAX="0.2", **extra)
    return env


def _start(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "server", "worker"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


async def _wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    for _ in range(int(timeout / step)):
        if await predicate():
            return True
        await asyncio.sleep(step)
    return False


@pytest.mark.slow
async def test_a_worker_killed_at_random_points_loses_nothing_and_repeats_only_inside_the_window(
        base_config, outbox_db, inbox):
    """A 500-sign-up run while the worker is SIGKILLed 4 times, each a random moment after it started
    delivering. After a restart everything is delivered; an email is repeated only if the kill fell
    between the SMTP server's acceptance and the commit of its key (at most one per kill, the consumer
    sends one at a time), a stream entry only if it fell between the XADD and the record (at most a
    batch per kill)."""
    pool = await create_pool(base_config)
    env = _env(base_config, inbox)
    delivered = lambda: outbox_db.fetchval("SELECT count(*) FROM outbox_deliveries WHERE status = 'delivered'")  # noqa: E731

    async def sign_ups():
        for i in range(SIGN_UPS):
            await create_user(pool, f"k{i}", request_id=f"r{i}")
            if i % 5 == 0:
                await asyncio.sleep(0.04)  # a steady stream over the whole run (about 4 s)

    producer = asyncio.create_task(sign_ups())
    rng = random.Random()
    kills_while_producing = 0
    try:
        for _ in range(KILLS):
            before = await delivered()
            proc = _start(env)
            try:
                assert await _wait_for(lambda: _more(delivered, before), 20), "the worker delivered nothing"
                await asyncio.sleep(rng.uniform(0, 0.3))
            finally:
                proc.kill()  # SIGKILL, by pid
                proc.wait(10)
                kills_while_producing += not producer.done()
        await producer
        proc = _start(env)
        try:
            done = lambda: _more(delivered, 2 * SIGN_UPS - 1)  # noqa: E731
            assert await _wait_for(done, 60), await statuses(outbox_db)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        producer.cancel()
        await pool.close()

    assert await statuses(outbox_db) == {"delivered": 2 * SIGN_UPS}
    assert kills_while_producing >= 1  # the kills fell inside the run, not after it
    per_recipient = collections.Counter(m["To"].addresses[0].addr_spec for m in inbox.messages)
    assert set(per_recipient) == {f"k{i}@example.com" for i in range(SIGN_UPS)}
    assert sum(per_recipient.values()) - SIGN_UPS <= KILLS
    ids = collections.Counter(int(f[b"id"]) for _, f in await _stream(base_config))
    assert set(ids) == set(range(1, SIGN_UPS + 1))
    assert sum(ids.values()) - SIGN_UPS <= KILLS * 100


async def _more(count, than: int) -> bool:
    return await count() > than


async def _stream(base_config):
    import redis.asyncio as redis
    client = redis.Redis.from_url(base_config.redis_url)
    try:
        return await client.xrange("events")
    finally:
        await client.aclose()


async def test_redeliver_cli_puts_dead_letters_back(base_config, outbox_db, inbox):
    pool = await create_pool(base_config)
    try:
        for name in ("rae", "sam", "tom"):
            await create_user(pool, name)
        await outbox_db.execute("UPDATE outbox_deliveries SET status = 'dead', last_error = 'x'")
        await outbox_db.execute("UPDATE outbox_deliveries SET status = 'delivered' WHERE event_id = 3")
        env = _env(base_config, inbox)
        run = lambda *args: subprocess.run([sys.executable, "-m", "server", "redeliver", *args], cwd=ROOT, env=env,  # noqa: E731
                                           capture_output=True, text=True, timeout=30)
        one = run("1")
        assert (one.returncode, one.stdout) == (0, "event 1: back in the queue\n")
        bad = run("3", "9")
        assert bad.returncode == 1
        assert bad.stdout == "event 3: not a dead letter\nevent 9: no such event\n"
        every = run("--all")
        assert (every.returncode, every.stdout) == (0, "1 dead events back in the queue\n")
        assert run().returncode == 2
        assert (await outbox.stats(pool))["dead_letters"] == 0
        assert await statuses(outbox_db) == {"pending": 4, "delivered": 2}
    finally:
        await pool.close()


def test_worker_without_database_url_says_how_to_run_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = subprocess.run([sys.executable, "-m", "server", "worker"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and "needs DATABASE_URL and REDIS_URL" in out.stderr
