"""A consumer's endpoint coming back: what failed while it was unreachable is retried at once, not after
its backoff; a delivery another worker has claimed meanwhile is left alone."""

from __future__ import annotations

from server import outbox
from tests.outbox_kit import create_user, inbox, make_worker, outbox_db, events_config, statuses  # noqa: F401

STREAM = "SELECT event_id, status, attempts, next_attempt_at > now() + interval '10 seconds' AS later " \
         "FROM outbox_deliveries WHERE consumer = 'stream' ORDER BY event_id"


async def test_stream_deliveries_that_failed_while_redis_was_down_are_due_once_it_answers(
        outbox_db, make_worker, servers):
    redis_server = servers()
    # A backoff of 60 s or more: without the recovery they would wait a minute.
    worker = await make_worker(redis_url=redis_server.url, outbox_backoff_base=120, outbox_backoff_max=120,
                               outbox_max_attempts=15)
    redis_server.stop()
    for name in ("ann", "ben", "cid"):
        await create_user(worker.pool, name)
    await worker.run_once()
    assert [(r["status"], r["attempts"], r["later"]) for r in await outbox_db.fetch(STREAM)] == [("pending", 1, True)] * 3
    # Another worker claims event 3 meanwhile (its attempts move on): it is its, not ours to hasten.
    await outbox_db.execute("UPDATE outbox_deliveries SET attempts = attempts + 1, "
                            "next_attempt_at = now() + interval '60 seconds' WHERE consumer = 'stream' AND event_id = 3")

    servers(port=redis_server.port)  # back, empty
    await create_user(worker.pool, "dan")  # a new event: its delivery succeeds and shows Redis answers
    await worker.run_once()  # dan's stream delivery; ann's and ben's are due again
    await worker.run_once()
    rows = {r["event_id"]: (r["status"], r["attempts"]) for r in await outbox_db.fetch(STREAM)}
    assert rows == {1: ("delivered", 2), 2: ("delivered", 2), 3: ("pending", 2), 4: ("delivered", 1)}
    ids = sorted(int(f[b"id"]) for _, f in await worker.consumers["stream"].client.xrange("events"))
    assert ids == [1, 2, 4]


async def test_a_failing_message_is_not_hastened_by_the_others_success(outbox_db, make_worker):
    """Only failures of an unreachable endpoint are remembered: a delivery that failed on its own (here
    an unknown consumer name) keeps its backoff when others succeed."""
    worker = await make_worker(outbox_backoff_base=120, outbox_backoff_max=120)
    await create_user(worker.pool, "eve")
    await outbox_db.execute("UPDATE outbox_deliveries SET consumer = 'gone' WHERE consumer = 'welcome_mail'")
    await worker.run_once()
    await create_user(worker.pool, "fay")
    await worker.run_once()
    assert await outbox.hasten(worker.pool, "gone", {}) == 0
    row = await outbox_db.fetchrow("SELECT status, attempts, next_attempt_at > now() + interval '10 seconds' AS later "
                                   "FROM outbox_deliveries WHERE consumer = 'gone'")
    assert tuple(row) == ("pending", 1, True)
    assert (await statuses(outbox_db))["pending"] == 1
