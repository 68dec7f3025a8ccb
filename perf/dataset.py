"""The seeded data set of a run: a cached seeded database per scale and seed, copied afresh per target."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from server import seed as seeding
from server.migrate import load as load_migrations, migrate
from server.seedgen import Plan

log = logging.getLogger("perf.dataset")
ROOT = Path(__file__).resolve().parent.parent
RUN_DB = "perf_run"


@dataclass(frozen=True)
class Seeded:
    """What the seeded database holds, for the scenarios' ranges."""

    posts: int
    users: int
    tags: list[str]
    seed: int
    template: str  # the cached seeded database that every run database is copied from
    limits: tuple[int, int]  # max_connections, superuser_reserved_connections


def _seed_key(posts: int, seed: int) -> str:
    """Name of the cached database: changes with the migrations and the seeder's code."""
    digest = hashlib.sha256()
    for m in load_migrations():
        digest.update(m.checksum.encode())
    for module in ("seed.py", "seedgen.py"):
        digest.update((ROOT / "server" / module).read_bytes())
    return f"seed_{posts}_{seed}_{digest.hexdigest()[:10]}"


def dsn_of(admin_dsn: str, database: str) -> str:
    return admin_dsn.rsplit("/", 1)[0] + "/" + database


async def prepare_database(admin_dsn: str, posts: int, seed: int, run_db: str = RUN_DB) -> Seeded:
    """The run database `run_db`, copied from a cached seeded template (seeding it first when missing)."""
    name = _seed_key(posts, seed)
    plan = Plan(posts=posts, users=seeding.default_users(posts), seed=seed, until=seeding.midnight_utc())
    admin = await asyncpg.connect(admin_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            log.info("seeding %d posts into a new cached database %s", posts, name)
            await admin.execute("DROP DATABASE IF EXISTS seed_building WITH (FORCE)")
            await admin.execute("CREATE DATABASE seed_building")
            await migrate(dsn_of(admin_dsn, "seed_building"))
            stats = await seeding.seed(dsn_of(admin_dsn, "seed_building"), plan)
            log.info("seeded %d rows at %d rows/s", stats["rows"], stats["rows_per_second"])
            # Renamed only when complete, so an interrupted seeding is never taken for a cached one.
            await admin.execute(f'ALTER DATABASE seed_building RENAME TO "{name}"')
            for old in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname <> $2",
                                         f"seed_{posts}_{seed}_%", name):
                await admin.execute(f'DROP DATABASE "{old["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()
    await copy_database(admin_dsn, name, run_db)
    run = await asyncpg.connect(dsn_of(admin_dsn, run_db))
    try:
        tags = [r["name"] for r in await run.fetch("SELECT name FROM tags ORDER BY id")]
        users = await run.fetchval("SELECT count(*) FROM users WHERE email LIKE 'user%@example.com'")
        count = await run.fetchval("SELECT max(id) FROM posts")
        limits = (int(await run.fetchval("SHOW max_connections")),
                  int(await run.fetchval("SHOW superuser_reserved_connections")))
    finally:
        await run.close()
    return Seeded(posts=count, users=users, tags=tags, seed=seed, template=name, limits=limits)


async def copy_database(admin_dsn: str, template: str, run_db: str = RUN_DB) -> None:
    """(Re)create a run database from the seeded template, so every target starts from the same rows."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {run_db} WITH (FORCE)")
        # FILE_COPY copies the files (after a checkpoint) instead of WAL-logging every block.
        await admin.execute(f'CREATE DATABASE {run_db} TEMPLATE "{template}" STRATEGY FILE_COPY')
        # At 10^6 posts the copy is 6 GB of dirty pages: written back now, not during the first
        # measurement (the kernel's write-back and the next checkpoint would compete with it).
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()
    await asyncio.to_thread(os.sync)
