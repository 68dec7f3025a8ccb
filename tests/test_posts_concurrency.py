"""Counts stay exact under concurrent writers of every kind, and cursor walks neither repeat nor skip.

The counters behind every total (migration 0003) are kept by triggers, so they must hold whoever writes:
the API, and outside tools writing straight into the core tables (multi-row inserts, COPY, updates that
move rows, deletes, TRUNCATE). Each test ends by comparing every counter with a fresh count(*).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import random

import asyncpg
import pytest

from server.retry import retrying
from tests.conftest import actor
from tests.posts_support import COUNTER_DRIFT, create_post, insert_user

API_TAGS = ["alpha", "Beta", "gamma", "delta", "eps", "zeta"]
RAW_TAGS = ["raw-a", "raw-b", "alpha", "beta"]
# What an outside writer may meet when racing others: a row gone meanwhile, a duplicate link, a deadlock
# between two of its own multi-row statements. The counters must be right whatever it meets.
RAW_RACES = (asyncpg.ForeignKeyViolationError, asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)


@pytest.fixture
async def pool(base_config):
    pool = await asyncpg.create_pool(base_config.database_url, min_size=2, max_size=12)
    yield pool
    await pool.close()


async def _random_id(pool, sql: str, *args):
    return await pool.fetchval(sql + " ORDER BY random() LIMIT 1", *args)


async def _api_writer(client, pool, who, seed: int, rounds: int, statuses: collections.Counter) -> None:
    rng = random.Random(seed)
    for _ in range(rounds):
        op = rng.choice(["create", "create", "patch", "comment", "comment", "uncomment", "delete"])
        if op == "create":
            tags = rng.sample(API_TAGS, rng.randint(0, 4))
            response = await client.post("/api/posts", json={"title": "t", "body": "b", "tags": tags},
                                         headers=who.headers)
        elif op == "patch":
            post_id = await _random_id(pool, "SELECT id FROM posts WHERE author_id = $1", who.id)
            if post_id is None:
                continue
            response = await client.patch(f"/api/posts/{post_id}", json={"tags": rng.sample(API_TAGS, 3)},
                                          headers=who.headers)
        elif op == "comment":
            post_id = await _random_id(pool, "SELECT id FROM posts")
            if post_id is None:
                continue
            response = await client.post(f"/api/posts/{post_id}/comments", json={"body": "c"}, headers=who.headers)
        elif op == "uncomment":
            comment_id = await _random_id(pool, "SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id "
                                                "WHERE c.author_id = $1 OR p.author_id = $1", who.id)
            if comment_id is None:
                continue
            response = await client.delete(f"/api/comments/{comment_id}", headers=who.headers)
        else:
            post_id = await _random_id(pool, "SELECT id FROM posts WHERE author_id = $1", who.id)
            if post_id is None:
                continue
            response = await client.delete(f"/api/posts/{post_id}", headers=who.headers)
        statuses[f"{op} {response.status}"] += 1


async def _raw_writer(pool, loaders: list[int], seed: int, rounds: int, outcomes: collections.Counter) -> None:
    rng = random.Random(seed)
    for _ in range(rounds):
        op = rng.choice(["posts", "posts", "copy_comments", "comments", "link", "unlink", "move_comment",
                         "move_post", "redate", "relink", "delete_comments", "delete_post", "tag_churn"])
        try:
            async with pool.acquire() as conn:
                await _raw_op(conn, rng, op, loaders)
            outcomes[f"{op} ok"] += 1
        except RAW_RACES as exc:
            outcomes[f"{op} {type(exc).__name__}"] += 1


async def _raw_op(conn: asyncpg.Connection, rng: random.Random, op: str, loaders: list[int]) -> None:
    if op == "posts":  # a multi-row insert and its links in one transaction
        async with conn.transaction():
            ids = await conn.fetch("INSERT INTO posts (author_id, title, body, created_at) "
                                   "SELECT a, 'raw', 'b', now() - random() * interval '30 days' "
                                   "FROM unnest($1::bigint[]) a RETURNING id",
                                   [rng.choice(loaders) for _ in range(rng.randint(1, 3))])
            await conn.execute("INSERT INTO post_tags (post_id, tag_id) SELECT p, t.id FROM unnest($1::bigint[]) p, "
                               "tags t WHERE t.name = ANY($2::text[])",
                               [r["id"] for r in ids], rng.sample(RAW_TAGS, 2))
    elif op == "copy_comments":
        posts = await conn.fetch("SELECT id FROM posts ORDER BY random() LIMIT 3")
        if posts:
            await conn.copy_records_to_table("comments", columns=["post_id", "author_id", "body"], records=[
                (rng.choice(posts)["id"], rng.choice(loaders), "copied") for _ in range(rng.randint(1, 6))])
    elif op == "comments":
        await conn.execute("INSERT INTO comments (post_id, author_id, body) "
                           "SELECT id, $1, 'raw' FROM posts ORDER BY random() LIMIT 2", rng.choice(loaders))
    elif op == "link":
        await conn.execute("INSERT INTO post_tags (post_id, tag_id) SELECT p.id, t.id FROM "
                           "(SELECT id FROM posts ORDER BY random() LIMIT 2) p, "
                           "(SELECT id FROM tags ORDER BY random() LIMIT 2) t ON CONFLICT DO NOTHING")
    elif op == "unlink":
        await conn.execute("DELETE FROM post_tags WHERE (post_id, tag_id) IN "
                           "(SELECT post_id, tag_id FROM post_tags ORDER BY random() LIMIT 2)")
    elif op == "move_comment":
        await conn.execute("UPDATE comments SET post_id = (SELECT id FROM posts ORDER BY random() LIMIT 1) "
                           "WHERE id = (SELECT id FROM comments ORDER BY random() LIMIT 1)")
    elif op == "move_post":
        await conn.execute("UPDATE posts SET author_id = $1 WHERE id = (SELECT id FROM posts ORDER BY random() LIMIT 1)",
                           rng.choice(loaders))
    elif op == "redate":
        await conn.execute("UPDATE posts SET created_at = created_at - interval '1 hour' "
                           "WHERE id = (SELECT id FROM posts ORDER BY random() LIMIT 1)")
    elif op == "relink":
        await conn.execute("UPDATE post_tags SET tag_id = (SELECT id FROM tags ORDER BY random() LIMIT 1) "
                           "WHERE (post_id, tag_id) = (SELECT post_id, tag_id FROM post_tags ORDER BY random() LIMIT 1)")
    elif op == "delete_comments":
        await conn.execute("DELETE FROM comments WHERE id IN (SELECT id FROM comments ORDER BY random() LIMIT 3)")
    elif op == "delete_post":
        await conn.execute("DELETE FROM posts WHERE id = (SELECT id FROM posts WHERE author_id = ANY($1::bigint[]) "
                           "ORDER BY random() LIMIT 1)", loaders)
    else:  # a tag only outside tools use, deleted (its links cascade) and made again
        async with conn.transaction():
            await conn.execute("DELETE FROM tags WHERE name = 'raw-b'")
            await conn.execute("INSERT INTO tags (name) VALUES ('raw-b') ON CONFLICT DO NOTHING")


async def test_every_count_matches_a_fresh_count_after_concurrent_writers(client, db, pool, alice, bob, admin):
    """Scenario: 3 API users and 6 outside writers, each on its own connection, race over the same posts."""
    carol = await actor(client, db, "carol")
    loaders = [await insert_user(db, f"loader_{i}") for i in range(3)]
    await db.execute("INSERT INTO tags (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", RAW_TAGS)
    for who in (alice, bob, carol):
        await create_post(client, who, tags=["alpha", "beta"])
    statuses, outcomes = collections.Counter(), collections.Counter()
    await asyncio.gather(
        *(_api_writer(client, pool, who, seed, 30, statuses) for seed, who in enumerate((alice, bob, carol, admin))),
        *(_raw_writer(pool, loaders, 100 + seed, 40, outcomes) for seed in range(6)))
    # 404: the post or comment went meanwhile; 403: an outside writer gave the post to another author.
    allowed = ("200", "201", "204", "404", "patch 403", "delete 403", "uncomment 403")
    assert not [s for s in statuses if not s.endswith(allowed)], statuses
    assert sum(n for s, n in statuses.items() if not s.endswith("404")) > 60, statuses
    assert sum(n for s, n in outcomes.items() if s.endswith("ok")) > 150, outcomes
    assert await db.fetch(COUNTER_DRIFT) == []
    # and what the API shows agrees with fresh counts
    listed = await (await client.get("/api/posts?limit=1")).json()
    assert listed["meta"]["total"] == await db.fetchval("SELECT count(*) FROM posts") > 0
    tags = (await (await client.get("/api/tags?limit=100")).json())["data"]
    fresh = await db.fetch("SELECT t.name, count(*) AS n FROM post_tags pt JOIN tags t ON t.id = pt.tag_id "
                           "GROUP BY t.name ORDER BY n DESC, t.name")
    assert tags == [{"name": r["name"], "postCount": r["n"]} for r in fresh]
    for who in (alice, bob, *loaders):
        author_id = who if isinstance(who, int) else who.id
        body = await (await client.get(f"/api/posts?author={author_id}&tag=alpha&limit=1")).json()
        assert body["meta"]["total"] == await db.fetchval(
            "SELECT count(*) FROM posts p JOIN post_tags pt ON pt.post_id = p.id JOIN tags t ON t.id = pt.tag_id "
            "WHERE p.author_id = $1 AND t.name = 'alpha'", author_id)


async def test_truncating_tables_resets_the_counters(client, db, alice):
    for _ in range(3):
        post = await create_post(client, alice, tags=["a", "b"])
        await client.post(f"/api/posts/{post['id']}/comments", json={"body": "c"}, headers=alice.headers)
    await db.execute("TRUNCATE comments")
    assert await db.fetchval("SELECT count(*) FROM post_stats") == 0
    await db.execute("TRUNCATE post_tags")
    assert await (await client.get("/api/tags")).json() == {"data": []}
    assert await db.fetch(COUNTER_DRIFT) == []
    await db.execute("TRUNCATE posts CASCADE")
    assert (await (await client.get("/api/posts")).json())["meta"]["total"] == 0
    assert await db.fetch(COUNTER_DRIFT) == []


async def test_concurrent_creators_of_the_same_new_tags_all_succeed(client, db, alice, bob):
    """Scenario: many posts at once name the same tags for the first time; the upsert creates each once."""
    tags = ["fresh-1", "fresh-2", "fresh-3", "fresh-4"]
    responses = await asyncio.gather(*(
        client.post("/api/posts", json={"title": "t", "body": "b", "tags": random.Random(i).sample(tags, 3)},
                    headers=(alice, bob)[i % 2].headers) for i in range(24)))
    assert [r.status for r in responses] == [201] * 24
    assert await db.fetchval("SELECT count(*) FROM tags") == 4
    assert await db.fetchval("SELECT sum(post_count) FROM tags") == 72
    assert await db.fetch(COUNTER_DRIFT) == []


async def test_cursor_walk_over_a_tag_has_no_duplicates_and_no_gaps_under_concurrent_inserts(client, db, pool,
                                                                                             alice):
    """Scenario: while a client walks a tag five posts at a time, others add posts with that tag, both new
    ones (the API) and back-dated ones between the walk's pages (an outside loader)."""
    author_id = await insert_user(db, "old_timer")
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    await db.execute("INSERT INTO tags (name) VALUES ('walk')")
    original = []
    for i in range(40):  # a few share a timestamp, so the id decides their order
        original.append(await db.fetchval(
            "INSERT INTO posts (author_id, title, body, created_at) VALUES ($1, 't', 'b', $2) RETURNING id",
            author_id, start + dt.timedelta(hours=i // 3)))
    await db.execute("INSERT INTO post_tags (post_id, tag_id) SELECT unnest($1::bigint[]), 1", original)
    walking = asyncio.Event()
    walking.set()

    async def insert_meanwhile():
        rng = random.Random(3)
        while walking.is_set():
            await create_post(client, alice, tags=["walk"])
            async with pool.acquire() as conn, conn.transaction():
                post_id = await conn.fetchval(
                    "INSERT INTO posts (author_id, title, body, created_at) VALUES ($1, 'late', 'b', $2) RETURNING id",
                    author_id, start + dt.timedelta(hours=rng.uniform(0, 14)))
                await conn.execute("INSERT INTO post_tags (post_id, tag_id) VALUES ($1, 1)", post_id)
            await asyncio.sleep(0)

    inserter = asyncio.ensure_future(insert_meanwhile())
    seen, keys, url = [], [], "/api/posts?tag=walk&limit=5"
    try:
        while url:
            body = await (await client.get(url)).json()
            seen += [p["id"] for p in body["data"]]
            keys += [(dt.datetime.fromisoformat(p["createdAt"]), p["id"]) for p in body["data"]]
            cursor = body["meta"]["nextCursor"]
            url = f"/api/posts?tag=walk&limit=5&cursor={cursor}" if cursor else None
            await asyncio.sleep(0.01)
    finally:
        walking.clear()
        await inserter
    assert len(seen) == len(set(seen)), "a post was listed twice"
    assert set(original) <= set(seen), "a post that was there all along was skipped"
    assert keys == sorted(keys, reverse=True), "the walk is not newest first"
    assert len(seen) > len(original)  # the back-dated inserts did land in pages still to come
    assert await db.fetch(COUNTER_DRIFT) == []


async def test_a_write_that_loses_a_deadlock_runs_again(db, pool, caplog):
    """Scenario: an outside transaction and ours lock two posts in opposite orders; PostgreSQL aborts ours
    (its deadlock_timeout is the shorter, so it is the one that finds the cycle); the retry succeeds."""
    author_id = await insert_user(db, "w")
    first, second = [await db.fetchval("INSERT INTO posts (author_id, title, body) VALUES ($1, 't', 'b') RETURNING id",
                                       author_id) for _ in range(2)]
    outside_holds_first, ours_holds_second = asyncio.Event(), asyncio.Event()
    attempts = []

    async def outside():
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL deadlock_timeout = '10s'")
            await conn.execute("UPDATE posts SET title = 'outside' WHERE id = $1", first)
            outside_holds_first.set()
            await ours_holds_second.wait()
            await conn.execute("UPDATE posts SET title = 'outside' WHERE id = $1", second)

    async def write():
        attempts.append(1)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL deadlock_timeout = '50ms'")
            await conn.execute("UPDATE posts SET title = 'ours' WHERE id = $1", second)
            ours_holds_second.set()
            await outside_holds_first.wait()
            await conn.execute("UPDATE posts SET title = 'ours' WHERE id = $1", first)
        return "written"

    outside_task = asyncio.ensure_future(outside())
    await outside_holds_first.wait()
    assert await retrying(write) == "written"
    await outside_task
    assert len(attempts) == 2
    assert "DeadlockDetectedError" in caplog.text
    assert await db.fetchval("SELECT array_agg(DISTINCT title) FROM posts") == ["ours"]
