"""Migrations: from zero, re-run is a no-op, concurrent runners, edited files refused."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from server.migrate import Migration, MigrationError, apply, load


@pytest.fixture
async def fresh_dsn(base_config):
    name = "m_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(base_config.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    yield base_config.database_url.rsplit("/", 1)[0] + "/" + name
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


async def test_from_zero_then_rerun_is_a_noop(fresh_dsn):
    conn = await asyncpg.connect(fresh_dsn)
    try:
        applied = await apply(conn)
        assert applied == [f"{m.version:04d}_{m.name}" for m in load()]
        assert await apply(conn) == []
        tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"users", "posts", "tags", "post_tags", "comments", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_migration_once(fresh_dsn):
    conns = [await asyncpg.connect(fresh_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, len(load())]
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(load())
    finally:
        for c in conns:
            await c.close()


async def test_a_failing_migration_leaves_nothing_behind(fresh_dsn):
    conn = await asyncpg.connect(fresh_dsn)
    try:
        bad = load() + [Migration(9999, "broken", "CREATE TABLE half_done (id int); SELECT no_such_function();")]
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply(conn, bad)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == load()[-1].version
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused(fresh_dsn):
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await apply(conn)
        first = load()[0]
        edited = [Migration(first.version, first.name, first.sql + "\n-- edited")]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply(conn, edited)
    finally:
        await conn.close()
