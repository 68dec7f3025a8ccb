"""The seeder: equal seeds give equal rows, the documented sizes and skews hold, ids and sequences line up."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from server.security import verify_password
from server.seed import COLUMNS, PASSWORD, SeedError, seed
from server.seedgen import Plan

ROOT = Path(__file__).resolve().parent.parent
UNTIL = datetime(2024, 6, 1, tzinfo=timezone.utc)


async def _dump(conn) -> dict:
    """Every row of the core tables in id order, password hashes aside (their salt is random)."""
    out = {}
    for table, columns in COLUMNS.items():
        shown = [c for c in columns if c != "password_hash"]
        out[table] = [tuple(r) for r in await conn.fetch(f"SELECT {', '.join(shown)} FROM {table} ORDER BY 1, 2")]
    return out


async def test_equal_seeds_give_equal_rows_and_other_seeds_do_not(db, base_config):
    plan = Plan(posts=200, users=30, tags=40, seed=5, until=UNTIL, chunk=64)
    first = await seed(base_config.database_url, plan, truncate=True, progress=False, vacuum=False)
    rows = await _dump(db)
    again = await seed(base_config.database_url, plan, truncate=True, progress=False, vacuum=False)
    assert await _dump(db) == rows
    assert {k: first[k] for k in COLUMNS} == {k: again[k] for k in COLUMNS} == {k: len(v) for k, v in rows.items()}
    await seed(base_config.database_url, Plan(**{**plan.__dict__, "seed": 6}), truncate=True, progress=False,
               vacuum=False)
    assert (await _dump(db))["posts"] != rows["posts"]


async def test_sizes_skews_and_timelines_are_as_documented(db, base_config):
    plan = Plan(posts=2000, users=200, tags=300, seed=11, until=UNTIL)
    stats = await seed(base_config.database_url, plan, truncate=True, progress=False)
    assert (stats["posts"], stats["users"], stats["tags"]) == (2000, 200, 300)
    assert stats["rows_per_second"] > 0

    lengths = await db.fetchrow("SELECT avg(length(title)) t, avg(length(body)) b FROM posts")
    assert 50 <= lengths["t"] <= 70 and 1350 <= lengths["b"] <= 1650
    assert 170 <= await db.fetchval("SELECT avg(length(body)) FROM comments") <= 230

    names = [r["name"] for r in await db.fetch("SELECT name FROM tags")]
    assert len(set(names)) == 300 and all(re.fullmatch(r"[a-z0-9-]{1,32}", n) for n in names)
    per_post = [r["n"] for r in await db.fetch("SELECT count(*) n FROM post_tags GROUP BY post_id")]
    assert len(per_post) == 2000 and set(per_post) == {1, 2, 3}

    counts = [r["n"] for r in await db.fetch(
        "SELECT count(c.id) n FROM posts p LEFT JOIN comments c ON c.post_id = p.id GROUP BY p.id")]
    assert 8 <= statistics.mean(counts) <= 12  # ten per post on average ...
    assert statistics.median(counts) <= 6 and max(counts) >= 100  # ... skewed: most have few, some hundreds

    bad = await db.fetchrow("""
        SELECT (SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY id) d FROM posts) x WHERE d),
               (SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY id) d FROM users) x WHERE d),
               (SELECT count(*) FROM posts p JOIN users u ON u.id = p.author_id WHERE u.created_at > p.created_at),
               (SELECT count(*) FROM comments c JOIN posts p ON p.id = c.post_id WHERE c.created_at < p.created_at),
               (SELECT count(*) FROM posts WHERE created_at < $1::timestamptz - interval '366 days' OR created_at > $1)""", UNTIL)
    assert tuple(bad) == (0, 0, 0, 0, 0)

    # Identity sequences continue after the explicit ids, so the API's next insert does not collide.
    assert await db.fetchval("SELECT nextval(pg_get_serial_sequence('posts', 'id'))") == 2001
    user = await db.fetchrow("SELECT email, username, password_hash FROM users WHERE id = 7")
    assert (user["email"], user["username"]) == ("user7@example.com", "user7")
    assert verify_password(user["password_hash"], PASSWORD)


async def test_a_filled_database_is_refused_without_truncate(db, base_config):
    await db.execute("INSERT INTO tags (name) VALUES ('kept')")
    with pytest.raises(SeedError, match="--truncate"):
        await seed(base_config.database_url, Plan(posts=5, users=2), progress=False)
    assert await db.fetchval("SELECT count(*) FROM posts") == 0


def test_the_seed_command_reports_rows_per_second(db, base_config):
    env = {**os.environ, "DATABASE_URL": base_config.database_url, "REDIS_URL": base_config.redis_url,
           "LOG_LEVEL": "warning"}
    out = subprocess.run([sys.executable, "-m", "server", "seed", "--posts", "50", "--users", "5", "--truncate"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r"seeded \d+ rows \(5 users, 300 tags, 50 posts, .*\) in [0-9.]+ s: \d+ rows/s", out.stdout)
