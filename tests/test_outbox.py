"""The outbox end to end: emit in the writer's transaction, workers, consumers, retries, dead letters."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
import redis.asyncio as redis

from server import outbox
from server.db import POOL, transaction
from server.embedded import free_port
from tests.conftest import actor, sign_up
from tests.outbox_kit import create_user, drain, events_config, inbox, make_worker, outbox_db, statuses  # noqa: F401


async def test_a_rolled_back_sign_up_sends_nothing(outbox_db, make_worker, inbox):
    worker = await make_worker()
    heard = []
    await outbox_db.add_listener(outbox.CHANNEL, lambda *args: heard.append(args))
    with pytest.raises(RuntimeError):
        async with transaction(worker.pool) as conn:
            await outbox.emit(conn, "user.created", {"userId": 1}, "req-1")
            raise RuntimeError("the writer fails after emitting")
    await asyncio.sleep(0.2)
    assert heard == []  # no wake-up either: PostgreSQL drops the notification with the transaction
    assert await outbox_db.fetchval("SELECT count(*) FROM outbox_events") == 0
    await drain(worker)
    assert inbox.messages == []


async def test_a_refused_sign_up_over_http_emits_nothing(aiohttp_client, events_config, outbox_db, make_worker, inbox):
    from server.app import create_app
    client = await aiohttp_client(create_app(events_config))
    await sign_up(client, "taken")
    response = await client.post("/api/users", json={"email": "taken@example.com", "username": "other",
                                                     "password": "correct horse"})
    assert response.status == 409
    assert await outbox_db.fetchval("SELECT count(*) FROM outbox_events") == 1
    await drain(await make_worker())
    assert [m["To"] for m in inbox.messages] == ["taken <taken@example.com>"]


async def test_each_committed_sign_up_sends_exactly_one_welcome_email(aiohttp_client, events_config, outbox_db,
                                                                       make_worker, inbox):
    from server.app import create_app
    client = await aiohttp_client(create_app(events_config))
    for name in ("ann", "bob", "cyd"):
        response = await client.post("/api/users", headers={"X-Request-Id": f"signup-{name}"}, json={
            "email": f"{name}@example.com", "username": name, "password": "correct horse", "displayName": name.upper()})
        assert response.status == 201
    worker = await make_worker()
    await drain(worker)
    await drain(worker)  # nothing is due any more: a second pass sends nothing
    assert sorted(m["To"] for m in inbox.messages) == ["ANN <ann@example.com>", "BOB <bob@example.com>",
                                                      "CYD <cyd@example.com>"]
    message = inbox.to("ann@example.com")[0]
    assert message["Subject"] == "Welcome to the blog, ANN"
    assert message["From"] == "Blog <no-reply@localhost>"
    assert "your account \"ann\" is ready" in message.get_body(("plain",)).get_content()
    assert "<strong>ann</strong>" in message.get_body(("html",)).get_content()
    assert await statuses(outbox_db) == {"delivered": 6}
    # The stream carries the whole event, with the request id of the sign-up that caused it.
    entries = await worker.consumers["stream"].client.xrange("events")
    payloads = [orjson.loads(fields[b"payload"]) for _, fields in entries]
    first = payloads[0]
    assert set(first) == {"id", "type", "occurredAt", "requestId", "data"}
    assert (first["type"], first["requestId"], first["data"]) == ("user.created", "signup-ann", {"userId": 1})
    assert first["occurredAt"].endswith("Z") and entries[0][1][b"id"] == str(first["id"]).encode()


async def test_comment_email_goes_to_the_post_author_but_not_for_their_own_comment(outbox_db, make_worker, inbox):
    worker = await make_worker()
    author = await create_user(worker.pool, "author")
    reader = await create_user(worker.pool, "reader")
    post = await outbox_db.fetchval("INSERT INTO posts (author_id, title, body) VALUES ($1, 'Tips & <tricks>', 'b') "
                                    "RETURNING id", author)
    for who, body in ((reader, "Great <post>!\nThanks."), (author, "Thanks for reading")):
        comment = await outbox_db.fetchval("INSERT INTO comments (post_id, author_id, body) VALUES ($1, $2, $3) "
                                           "RETURNING id", post, who, body)
        async with transaction(worker.pool) as conn:
            await outbox.emit(conn, "comment.created", {"commentId": comment, "postId": post, "authorId": who}, None)
    await drain(worker)
    comments = [m for m in inbox.messages if m["Subject"].startswith("New comment")]
    assert [m["To"] for m in comments] == ["Author <author@example.com>"]
    assert comments[0]["Subject"] == 'New comment on "Tips & <tricks>"'
    assert "Great <post>!\r\nThanks." in comments[0].get_body(("plain",)).get_content()
    assert "Great &lt;post&gt;!" in comments[0].get_body(("html",)).get_content()
    assert await statuses(outbox_db) == {"delivered": 8}  # 2 users × 2 consumers + 2 comments × 2


async def test_two_workers_deliver_500_events_exactly_once(outbox_db, make_worker, inbox):
    first, second = await make_worker(), await make_worker()
    async with transaction(first.pool) as conn:
        await conn.execute("INSERT INTO users (email, username, password_hash) "
                           "SELECT 'u' || i || '@example.com', 'u' || i, 'x' FROM generate_series(1, 500) i")
        for user_id in range(1, 501):
            await outbox.emit(conn, "user.created", {"userId": user_id}, None)
    claimed = await drain(first, second)
    assert sum(claimed) == 1000 and min(claimed) > 0  # both took part
    recipients = [m["To"] for m in inbox.messages]
    assert len(recipients) == 500 and len(set(recipients)) == 500
    ids = [int(f[b"id"]) for _, f in await first.consumers["stream"].client.xrange("events")]
    assert sorted(ids) == list(range(1, 501))
    assert await statuses(outbox_db) == {"delivered": 1000}
    assert await outbox_db.fetchval("SELECT max(attempts) FROM outbox_deliveries") == 1  # no one claimed twice


async def test_a_failing_consumer_neither_blocks_nor_repeats_the_others(outbox_db, make_worker, inbox):
    """Redis is down: the stream deliveries fail and wait, the emails go out; when Redis is back, only the
    stream deliveries run again."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    broken = await make_worker(redis_url=dead_redis, outbox_max_attempts=50)
    for name in ("dee", "eve"):
        await create_user(broken.pool, name)
    for _ in range(3):  # the stream deliveries are retried; the emails are not sent again
        await drain(broken, wait_up_to=0)
        await asyncio.sleep(0.25)
    await drain(broken, wait_up_to=0)
    assert len(inbox.messages) == 2
    assert await statuses(outbox_db) == {"delivered": 2, "pending": 2}
    event = (await outbox.list_events(broken.pool, "pending", 10))[0][0]
    assert event["attempts"] >= 3 and "Error" in event["lastError"]
    assert {d["consumer"]: d["status"] for d in event["deliveries"]} == {"stream": "pending",
                                                                       "welcome_mail": "delivered"}
    await drain(await make_worker())
    assert len(inbox.messages) == 2
    assert await statuses(outbox_db) == {"delivered": 4}


async def test_refused_mail_is_retried_then_dead_and_delivered_once_after_redelivery(outbox_db, make_worker, inbox):
    inbox.refuse = "451 4.3.0 Mailbox busy, try later"
    worker = await make_worker()
    for name in ("fay", "gus"):
        await create_user(worker.pool, name)
    await drain(worker)
    assert inbox.refused == 6  # 2 emails × 3 attempts
    assert await outbox.stats(worker.pool) == {"backlog": 0, "oldest_pending_age": 0.0, "dead_letters": 2}
    dead, total, more = await outbox.list_events(worker.pool, "dead", 10)
    assert (total, more, [e["id"] for e in dead]) == (2, False, [2, 1])
    assert dead[0]["status"] == "dead" and dead[0]["attempts"] == 3
    assert {d["consumer"]: (d["status"], d["attempts"]) for d in dead[0]["deliveries"]} == {
        "stream": ("delivered", 1), "welcome_mail": ("dead", 3)}
    assert "451" in dead[0]["lastError"] and "Mailbox busy" in dead[0]["lastError"]
    inbox.refuse = None
    assert await outbox.redeliver(worker.pool, 1) == "redelivered"
    assert await outbox.redeliver(worker.pool, 1) == "not_dead"
    assert await outbox.redeliver(worker.pool, 99) == "missing"
    assert await outbox.redeliver_all(worker.pool) == 1
    await drain(worker)
    assert sorted(m["To"] for m in inbox.messages) == ["Fay <fay@example.com>", "Gus <gus@example.com>"]
    assert await statuses(outbox_db) == {"delivered": 4}
    assert (await outbox.stats(worker.pool))["dead_letters"] == 0


async def test_a_redelivered_event_never_sends_a_second_mail(outbox_db, make_worker, inbox):
    """The mail's own idempotency key holds even when the delivery record says otherwise (a crash after
    the send and the key's commit, before the delivery was marked)."""
    worker = await make_worker()
    await create_user(worker.pool, "hal")
    await drain(worker)
    await outbox_db.execute("UPDATE outbox_deliveries SET status = 'dead' WHERE consumer = 'welcome_mail'")
    assert await outbox.redeliver(worker.pool, 1) == "redelivered"
    await drain(worker)
    assert len(inbox.messages) == 1
    assert await statuses(outbox_db) == {"delivered": 2}


async def test_a_consumer_group_on_the_stream_receives_every_event(outbox_db, make_worker, inbox, base_config):
    reader = redis.Redis.from_url(base_config.redis_url)
    await reader.xgroup_create("events", "search-indexer", id="$", mkstream=True)
    worker = await make_worker()
    user = await create_user(worker.pool, "ivy")
    post = await outbox_db.fetchval("INSERT INTO posts (author_id, title, body) VALUES ($1, 't', 'b') RETURNING id",
                                    user)
    async with transaction(worker.pool) as conn:
        for _ in range(30):
            await outbox.emit(conn, "post.created", {"postId": post, "authorId": user}, "req-p")
    await drain(worker)
    got = []
    while batch := await reader.xreadgroup("search-indexer", "c1", {"events": ">"}, count=7):
        for entry_id, fields in batch[0][1]:
            got.append((int(fields[b"id"]), fields[b"type"].decode()))
            await reader.xack("events", "search-indexer", entry_id)
    await reader.aclose()
    assert got == [(1, "user.created")] + [(i, "post.created") for i in range(2, 32)]


async def test_listing_pages_newest_first_with_a_cursor_and_filters(outbox_db, make_worker, inbox):
    worker = await make_worker()
    for name in ("jo", "kim", "lee", "max", "ned"):
        await create_user(worker.pool, name)
    await drain(worker)
    await outbox_db.execute("UPDATE outbox_deliveries SET status = 'dead', last_error = 'boom' "
                            "WHERE event_id = 2 AND consumer = 'stream'")
    await outbox_db.execute("UPDATE outbox_deliveries SET status = 'pending' WHERE event_id = 4")
    page, total, more = await outbox.list_events(worker.pool, None, 2)
    assert ([e["id"] for e in page], total, more) == ([5, 4], 5, True)
    page, total, more = await outbox.list_events(worker.pool, None, 2, before=4)
    assert ([e["id"] for e in page], more) == ([3, 2], True)
    assert [e["id"] for e in (await outbox.list_events(worker.pool, "delivered", 10))[0]] == [5, 3, 1]
    assert [e["id"] for e in (await outbox.list_events(worker.pool, "pending", 10))[0]] == [4]
    dead = (await outbox.list_events(worker.pool, "dead", 10))[0]
    assert [(e["id"], e["status"], e["lastError"]) for e in dead] == [(2, "dead", "boom")]
    assert (await outbox.stats(worker.pool))["backlog"] == 1
    assert await outbox.list_events(worker.pool, "dead", 10, before=2) == ([], 1, False)


async def test_a_dead_workers_claim_returns_after_its_lease(outbox_db, make_worker, inbox):
    crashed = await make_worker(outbox_lease=0.5)
    await create_user(crashed.pool, "olga")
    assert len(await outbox.claim(crashed.pool, 100, 0.5)) == 2  # claimed, then the worker "dies"
    other = await make_worker()
    assert await other.run_once() == 0  # reserved for the lease
    await asyncio.sleep(0.6)
    assert await other.run_once() == 2
    assert len(inbox.messages) == 1


async def test_the_worker_wakes_on_commit_and_stops_after_its_batch(outbox_db, make_worker, inbox):
    worker = await make_worker(outbox_poll_interval=30.0)  # only the notification can wake it in time
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    await create_user(worker.pool, "pia")
    for _ in range(100):
        if inbox.messages:
            break
        await asyncio.sleep(0.02)
    assert len(inbox.messages) == 1
    worker.stop()
    await asyncio.wait_for(task, 5)


async def _until(done, timeout: float) -> None:
    for _ in range(int(timeout / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within %s s" % timeout)


async def test_writes_over_http_wake_the_worker_after_their_commits(aiohttp_client, events_config, outbox_db, inbox):
    """A sign-up, a post and a comment each reach a worker that would otherwise sleep for 30 s."""
    from server.app import create_app
    config = dataclasses.replace(events_config, worker_in_process=True, outbox_poll_interval=30.0)
    client = await aiohttp_client(create_app(config))
    rosa = await actor(client, outbox_db, "rosa")
    await _until(lambda: inbox.to("rosa@example.com"), 5)  # the worker listens from here on
    sven = await actor(client, outbox_db, "sven")
    await _until(lambda: inbox.to("sven@example.com"), 5)
    response = await client.post("/api/posts", json={"title": "Hello", "body": "First"}, headers=rosa.headers)
    assert response.status == 201
    post_id = (await response.json())["data"]["id"]
    response = await client.post(f"/api/posts/{post_id}/comments", json={"body": "Welcome"}, headers=sven.headers)
    assert response.status == 201
    await _until(lambda: len(inbox.to("rosa@example.com")) == 2, 5)  # the comment mail to the post's author
    for _ in range(100):  # the stream's deliveries (post.created among them) went with the same wake-ups
        if (await outbox.stats(client.app[POOL]))["backlog"] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await outbox.stats(client.app[POOL]))["backlog"] == 0


async def test_wake_ups_coalesce_and_one_follows_every_call(outbox_db, make_worker):
    worker = await make_worker()
    heard = []
    await outbox_db.add_listener(outbox.CHANNEL, lambda *args: heard.append(args))
    for _ in range(50):  # a burst before the first is sent: that one comes after all of them
        outbox.wake(worker.pool)
    await _until(lambda: heard, 5)
    await asyncio.sleep(0.3)
    assert len(heard) == 1
    outbox.wake(worker.pool)
    await asyncio.sleep(0)  # on its way now; the calls below may have missed it, so one more follows
    outbox.wake(worker.pool)
    outbox.wake(worker.pool)
    await _until(lambda: len(heard) == 3, 5)
    await asyncio.sleep(0.3)
    assert len(heard) == 3


async def test_serve_runs_the_worker_in_process_when_configured(aiohttp_client, make_config, outbox_db, tmp_path):
    from server.app import create_app
    config = make_config(worker_in_process=True, smtp_url=None, var_dir=str(tmp_path), outbox_poll_interval=0.2)
    client = await aiohttp_client(create_app(config))
    await sign_up(client, "quinn")
    for _ in range(100):
        if files := list((tmp_path / "mail").glob("*.eml")):
            break
        await asyncio.sleep(0.05)
    assert len(files) == 1 and b"quinn@example.com" in files[0].read_bytes()
    for _ in range(100):  # the delivery is marked once the consumers' outcomes are recorded
        if (await outbox.stats(client.app[POOL]))["backlog"] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await outbox.stats(client.app[POOL]))["backlog"] == 0


def test_backoff_doubles_to_its_cap_with_jitter():
    for attempts, full in ((1, 2.0), (2, 4.0), (5, 32.0), (12, 1800.0), (400, 1800.0)):
        delays = [outbox.backoff(attempts, 2.0, 1800.0) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 150


async def test_an_unknown_event_type_is_refused(outbox_db):
    with pytest.raises(ValueError, match="unknown event type"):
        await outbox.emit(outbox_db, "user.renamed", {}, None)


async def test_the_stream_is_trimmed_to_about_its_maximum_length(outbox_db, make_worker, inbox):
    worker = await make_worker(stream_maxlen=10)
    user = await create_user(worker.pool, "una")
    post = await outbox_db.fetchval("INSERT INTO posts (author_id, title, body) VALUES ($1, 't', 'b') RETURNING id",
                                    user)
    async with transaction(worker.pool) as conn:
        for _ in range(400):
            await outbox.emit(conn, "post.created", {"postId": post, "authorId": user}, None)
    await drain(worker)
    # MAXLEN ~ trims whole nodes of the radix tree (100 entries each by default), so "about" 10.
    assert 10 <= await worker.consumers["stream"].client.xlen("events") <= 200


async def test_stats_age_and_pruning_of_old_delivered_events(outbox_db, make_worker, inbox):
    worker = await make_worker()
    for name in ("vic", "wes"):
        await create_user(worker.pool, name)
    await drain(worker)
    await create_user(worker.pool, "xia")  # stays pending
    await outbox_db.execute("UPDATE outbox_events SET occurred_at = now() - interval '8 days' WHERE id IN (1, 3)")
    stats = await outbox.stats(worker.pool)
    assert stats["backlog"] == 1 and 8 * 86400 - 60 < stats["oldest_pending_age"] < 8 * 86400 + 60
    await outbox_db.execute("UPDATE mail_sent SET sent_at = now() - interval '8 days'")
    assert await outbox.prune(worker.pool, 7) == 1  # event 1; event 2 is recent, event 3 not delivered
    assert [r["id"] for r in await outbox_db.fetch("SELECT id FROM outbox_events ORDER BY id")] == [2, 3]
    assert [r["event_id"] for r in await outbox_db.fetch("SELECT event_id FROM mail_sent")] == [2]
