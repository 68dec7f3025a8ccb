"""Units of the resilience layer: the answers to unparsable requests, the mapping of a full server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import asyncpg
import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from server.errors import ServiceUnavailable, ValidationError, from_exception
from server.protocol import _parse_error


@pytest.mark.parametrize("exc, message", [
    (LineTooLong(b"aaa...", 8190), "The request line or a header is too long"),
    (BadHttpMessage("Too many headers received"), "Too many header lines"),
    (BadStatusLine(b"\x16\x03\x01"), "The request is not valid HTTP/1.1"),
    (None, "The request is not valid HTTP/1.1"),
])
def test_parser_refusals_are_validation_errors(exc, message):
    error = _parse_error(exc)
    assert isinstance(error, ValidationError) and error.status == 400 and error.message == message


@pytest.mark.parametrize("exc", [asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
                                 asyncpg.exceptions.DiskFullError("could not extend file"),
                                 asyncpg.exceptions.CannotConnectNowError("the database system is starting up")])
def test_a_database_out_of_resources_is_a_503(exc):
    assert isinstance(from_exception(exc), ServiceUnavailable)


class _Handout:
    """Stands in for the pool: hands out the given (real) connections in turn."""

    def __init__(self, connections) -> None:
        self.connections = list(connections)
        self.renewed = 0

    async def renew(self) -> None:
        self.renewed += 1

    @contextlib.asynccontextmanager
    async def acquire(self):
        yield self.connections.pop(0)


async def test_a_write_starts_again_on_a_new_connection_when_begin_finds_its_connection_dead(base_config, db):
    """A connection whose server process was terminated while it sat idle: the write's BEGIN fails on it,
    nothing of the write has run, and the transaction starts again on the next connection."""
    from server.db import transaction

    dead = await asyncpg.connect(base_config.database_url)
    alive = await asyncpg.connect(base_config.database_url)
    try:
        assert await db.fetchval("SELECT pg_terminate_backend($1)", dead.get_server_pid())
        pool = _Handout([dead, alive])
        async with transaction(pool) as conn:
            assert conn is alive
            await conn.execute("CREATE TEMP TABLE t (x int)")
        assert pool.renewed == 1
        assert await alive.fetchval("SELECT count(*) FROM t") == 0  # committed
        with pytest.raises(asyncpg.InterfaceError):  # twice in a row: the error is the caller's
            async with transaction(_Handout([dead, dead])):
                pass
    finally:
        await alive.close()
        await dead.close()


async def test_reads_survive_every_connection_of_the_pool_killed_at_once(make_config, db):
    """The retry of a read must not land on another dead connection: the first loss renews them all."""
    from server.db import create_pool

    pool = await create_pool(make_config(pg_pool_min=4, pg_pool_max=4))
    try:
        await asyncio.gather(*(pool.fetchval("SELECT pg_sleep(0.05)") for _ in range(4)))  # four open
        pids = await db.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                              "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [r["pid"] for r in pids])
        assert await asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(8))) == [1] * 8
    finally:
        await pool.close()


@pytest.fixture
async def one_connection_pool(make_config, db):
    """A pool of one connection, and a table for single-statement writes."""
    from server.db import create_pool

    await db.execute("CREATE TABLE IF NOT EXISTS write_once_probe (tag text PRIMARY KEY)")
    await db.execute("TRUNCATE write_once_probe")
    pool = await create_pool(make_config(pg_pool_min=1, pg_pool_max=1))
    try:
        yield pool
    finally:
        await pool.close()
        await db.execute("DROP TABLE write_once_probe")


_INSERT = "INSERT INTO write_once_probe (tag) VALUES ($1) RETURNING tag"
_WRITTEN = "SELECT tag FROM write_once_probe WHERE tag = $1"


async def _end_the_pools_backend(pool) -> None:
    """The pool's only connection loses its server process while idle, and the event loop does not run
    until the write: the pool cannot have noticed (SIGTERM is what pg_terminate_backend sends)."""
    pid = await pool.fetchval("SELECT pg_backend_pid()")
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)  # blocking on purpose


async def test_a_one_statement_write_on_a_connection_that_died_idle_runs_once_on_a_new_one(one_connection_pool, db):
    await _end_the_pools_backend(one_connection_pool)
    row = await one_connection_pool.write_once(_INSERT, ("a",), _WRITTEN, ("a",))
    assert row["tag"] == "a"
    assert await db.fetchval("SELECT count(*) FROM write_once_probe") == 1


async def test_a_one_statement_write_whose_answer_was_lost_after_it_committed_is_not_run_again(one_connection_pool, db):
    """The statement committed, then the connection was lost before its answer came back (here: the row
    exists already): the write answers that row; running it again would violate the primary key."""
    await db.execute("INSERT INTO write_once_probe (tag) VALUES ('b')")
    await _end_the_pools_backend(one_connection_pool)
    row = await one_connection_pool.write_once(_INSERT, ("b",), _WRITTEN, ("b",))
    assert row["tag"] == "b"
    assert await db.fetchval("SELECT count(*) FROM write_once_probe") == 1


async def test_a_comment_that_committed_before_its_connection_was_lost_is_answered_not_written_again(
        one_connection_pool, db):
    """insert_comment and comment_written together: the answer of the write that did commit, found by
    its request id, and no second comment."""
    from server.db import Q
    from tests.posts_support import insert_user

    user_id = await insert_user(db, "carol")
    post_id = await db.fetchval("INSERT INTO posts (author_id, title, body) VALUES ($1, 't', 'b') RETURNING id", user_id)
    args = (post_id, user_id, "hello", "request-1", ["stream"])
    committed = await db.fetchrow(Q.insert_comment, *args)  # its answer never reached the API
    await _end_the_pools_backend(one_connection_pool)
    row = await one_connection_pool.write_once(Q.insert_comment, args, Q.comment_written,
                                               ("request-1", post_id, user_id, "hello"))
    assert (row["id"], row["data"]) == (committed["id"], committed["data"])
    assert await db.fetchval("SELECT count(*) FROM comments") == 1
    assert await db.fetchval("SELECT count(*) FROM outbox_events WHERE type = 'comment.created'") == 1
