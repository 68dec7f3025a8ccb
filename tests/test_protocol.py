"""Units of the resilience layer: the answers to unparsable requests, the mapping of a full server."""

from __future__ import annotations

import asyncio
import contextlib

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
