"""`python -m server seed`: fills the core tables through COPY, deterministically for a given seed."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import time
from datetime import datetime, timezone

import asyncpg
import uvloop
from tqdm import tqdm

from .config import Config
from .embedded import services
from .migrate import migrate
from .security import hash_password
from .seedgen import Generator, Plan

# Every seeded user's password (users are user{id}@example.com), so load scenarios can log in.
PASSWORD = "perf-password"
COLUMNS = {
    "users": ("id", "email", "username", "display_name", "bio", "password_hash", "created_at", "updated_at"),
    "tags": ("id", "name"),
    "posts": ("id", "author_id", "title", "body", "created_at", "updated_at"),
    "post_tags": ("post_id", "tag_id"),
    "comments": ("id", "post_id", "author_id", "body", "created_at"),
}
IDENTITIES = ("users", "tags", "posts", "comments")


class SeedError(RuntimeError):
    """The database cannot be seeded as asked (for example: it already holds rows)."""


def default_users(posts: int) -> int:
    return max(10, posts // 10)


def midnight_utc() -> datetime:
    """Today at 00:00 UTC: the default end of the seeded year, so a seed gives the same rows all day."""
    return datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


async def _prepare(conn: asyncpg.Connection, truncate: bool) -> None:
    if truncate:
        # CASCADE also empties tables that reference these (sessions, counters keyed by post ...).
        await conn.execute(f"TRUNCATE {', '.join(COLUMNS)} RESTART IDENTITY CASCADE")
        return
    for table in COLUMNS:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            raise SeedError(f"table {table} is not empty: pass --truncate to empty the core tables first")


async def seed(dsn: str, plan: Plan, *, truncate: bool = False, progress: bool = True,
               vacuum: bool = True) -> dict:
    """Load `plan` into the database at `dsn`; returns the row counts, seconds and rows per second."""
    started = time.perf_counter()
    # One argon2id hash for everyone: hashing per user would cost ~20 ms each (hours at 10^5 users).
    generator = Generator(plan, hash_password(PASSWORD))
    counts = dict.fromkeys(COLUMNS, 0)
    expected = plan.users + plan.tags + plan.posts * (3 + plan.comments_per_post)  # ~2 tags per post
    bar = tqdm(total=int(expected), unit="row", unit_scale=True, disable=None if progress else True,
               desc="seed", smoothing=0.1)
    conn = await asyncpg.connect(dsn)
    try:
        # citext has no binary codec in asyncpg; its wire format is text's, so borrow that one.
        await conn.set_builtin_type_codec("citext", schema="public", codec_name="text")
        await _prepare(conn, truncate)

        async def copy(table: str, rows: list[tuple]) -> None:
            if rows:
                await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
                counts[table] += len(rows)
                bar.update(len(rows))

        async with conn.transaction():
            await copy("tags", generator.tags())
        async for users in _ahead(generator.users()):
            async with conn.transaction():
                await copy("users", users)
        # One transaction per chunk: row triggers that keep counters see modest batches, and a failed
        # load leaves whole chunks behind, never half of a post's comments.
        async for posts, post_tags, comments in _ahead(generator.posts()):
            async with conn.transaction():
                await copy("posts", posts)
                await copy("post_tags", post_tags)
                await copy("comments", comments)
        for table in IDENTITIES:  # explicit ids leave the identity sequences behind; move them past
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        loaded = time.perf_counter() - started
        bar.close()
        # VACUUM sets the visibility map (index-only scans) and ANALYZE the planner's statistics, so the
        # first measured request sees the plans of a database that has been running for a while.
        await conn.execute(f"{'VACUUM (ANALYZE)' if vacuum else 'ANALYZE'} {', '.join(COLUMNS)}")
    finally:
        bar.close()
        await conn.close()
    rows = sum(counts.values())
    return {**counts, "rows": rows, "load_seconds": round(loaded, 2),
            "rows_per_second": round(rows / loaded), "seconds": round(time.perf_counter() - started, 2)}


async def _ahead(iterator):
    """Yield the iterator's items while a thread already builds the next one (the overlap with COPY)."""
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="seedgen") as executor:
        pending = loop.run_in_executor(executor, next, iterator, None)
        while (item := await pending) is not None:
            pending = loop.run_in_executor(executor, next, iterator, None)
            yield item


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--posts", type=int, required=True, help="posts to create (10^4 to 10^6)")
    parser.add_argument("--users", type=int, help="users to create (default: posts / 10, at least 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed; equal seeds give equal rows")
    parser.add_argument("--comments-per-post", type=float, default=10.0, help="mean comments per post")
    parser.add_argument("--tags", type=int, default=300, help="distinct tag names")
    parser.add_argument("--truncate", action="store_true", help="empty the core tables first")


def run(config: Config, args: argparse.Namespace) -> None:
    if args.posts < 1 or (args.users is not None and args.users < 1) or args.tags < 1:
        raise SeedError("--posts, --users and --tags must be positive")
    plan = Plan(posts=args.posts, users=args.users or default_users(args.posts), tags=args.tags,
                comments_per_post=args.comments_per_post, seed=args.seed, until=midnight_utc())
    with services(config) as config:
        uvloop.run(migrate(config.database_url))
        stats = uvloop.run(seed(config.database_url, plan, truncate=args.truncate))
    tables = ", ".join(f"{stats[t]} {t}" for t in COLUMNS)
    print(f"seeded {stats['rows']} rows ({tables}) in {stats['load_seconds']} s: "
          f"{stats['rows_per_second']} rows/s; {stats['seconds']} s with VACUUM ANALYZE. "
          "Users log in as user<id>@example.com with the password documented in perf/README.md.")
