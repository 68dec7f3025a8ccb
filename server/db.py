"""The asyncpg pool's cleanup context, the named-query loader and transaction()."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
from aiohttp import web

from .config import Config
from .deadlines import Deadlines

log = logging.getLogger("server.db")

QUERIES_DIR = Path(__file__).resolve().parent.parent / "sql" / "queries"
CONFIG = web.AppKey("config", Config)

_BLOCK = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.M)


class Queries(dict):
    """Named SQL blocks read once from sql/queries/*.sql; `Q.get_user` is the text of `-- name: get_user`."""

    def __getattr__(self, name: str) -> str:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {QUERIES_DIR}") from None


def load_queries(folder: Path = QUERIES_DIR) -> Queries:
    queries = Queries()
    for path in sorted(folder.glob("*.sql")):
        parts = _BLOCK.split(path.read_text())
        for name, sql in zip(parts[1::2], parts[2::2]):
            if name in queries:
                raise ValueError(f"query {name} is defined twice")
            queries[name] = sql.strip().rstrip(";")
    return queries


Q = load_queries()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(),
                                  decoder=orjson.loads)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's RESET ALL / UNLISTEN round trip (about 40 % of a small query's cost).

    Nothing here changes session state outside a transaction; asyncpg still rolls back an open one.
    """


# A statement that failed because its connection died (killed backend, server restart) never ran to
# completion; a read can safely run again once on a fresh connection.
# asyncpg raises InternalClientError when the server ended an idle connection and the next query finds
# the protocol in the middle of that error.
_CONNECTION_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, asyncpg.AdminShutdownError,
                    asyncpg.exceptions.InternalClientError, ConnectionResetError)


class Pool:
    """asyncpg's pool with a bounded wait for a connection and one retry of reads on a lost connection.

    asyncpg's own `pool.fetchrow` waits for a free connection for ever; here the wait ends after
    `acquire_timeout` with TimeoutError, which the envelope answers with a fast 503.
    """

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self.raw = pool
        self.acquire_timeout = acquire_timeout
        self.deadlines = Deadlines()
        self._notifying: dict[str, bool] = {}  # channel -> another NOTIFY wanted after the one on its way
        self._notifies: set[asyncio.Task] = set()

    async def _take(self) -> asyncpg.Connection:
        # The hot path skips the timer: with a free holder in asyncpg's queue nothing waits for another
        # request (a holder without a connection connects within the pool's connect timeout).
        if self.raw._queue.qsize():  # noqa: SLF001 - asyncpg exposes no cheaper "would not wait"
            return await self.raw.acquire()
        with self.deadlines.limit(self.acquire_timeout):
            return await self.raw.acquire()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self._take()
        try:
            yield conn
        finally:
            await self.raw.release(conn)

    async def renew(self) -> None:
        """Replace every connection at its next use (those in use when released).

        Called when one was found lost: the server restarted or its processes were terminated, so the
        other idle connections are most likely dead too, and a retry must not pick one of them.
        """
        await self.raw.expire_connections()

    async def _read(self, method: str, sql: str, args: tuple):
        for attempt in (1, 2):
            conn = await self._take()
            try:
                return await getattr(conn, method)(sql, *args)
            except _CONNECTION_LOST:
                await self.renew()
                if attempt == 2 or not _is_read(sql):
                    raise
            finally:
                await self.raw.release(conn)

    async def fetch(self, sql: str, *args) -> list[asyncpg.Record]:
        return await self._read("fetch", sql, args)

    async def fetchrow(self, sql: str, *args) -> asyncpg.Record | None:
        return await self._read("fetchrow", sql, args)

    async def fetchval(self, sql: str, *args):
        return await self._read("fetchval", sql, args)

    async def write_once(self, sql: str, args: tuple, committed: str, committed_args: tuple) -> asyncpg.Record | None:
        """A write that is one statement (its own transaction), in effect at most once even when its
        connection is lost: the connection may have died before the statement reached the server (its
        backend ended while idle in the pool, and the pool had not noticed yet) or after the commit but
        before the answer. Then the lost backend is ended for certain (PostgreSQL waits for it), the
        query `committed` returns the row the statement would have returned if it took effect, and if
        it did not, the statement runs again once, on a fresh connection.
        """
        conn = await self._take()
        pid = conn.get_server_pid()  # a lost connection leaves the pool at once, and its pid with it
        try:
            return await conn.fetchrow(sql, *args)
        except _CONNECTION_LOST as exc:
            lost = exc
            await self.renew()
        finally:
            await self.raw.release(conn)
        if not await self.fetchval(Q.backend_ended, pid):  # still running after the wait: fate unknown
            raise lost
        row = await self.fetchrow(committed, *committed_args)
        return row if row is not None else await self.fetchrow(sql, *args)

    async def execute(self, sql: str, *args) -> str:
        conn = await self._take()
        try:
            return await conn.execute(sql, *args)
        except _CONNECTION_LOST:
            await self.renew()
            raise
        finally:
            await self.raw.release(conn)

    def notify(self, channel: str) -> None:
        """NOTIFY `channel` soon, on a connection of its own, after the caller's commit.

        Calls coalesce: while one NOTIFY is on its way, any number of calls ask for one more after it,
        which every listener receives after all of their commits. A NOTIFY inside a write's transaction
        would hold PostgreSQL's cluster-wide notification lock from before that write's commit until its
        WAL flush ended, so such writes commit one at a time; here a burst of writes costs a NOTIFY or
        two and their commits share flushes. One that fails (or is cut short by the process ending) costs
        a listener only the wait until its next poll.
        """
        if channel in self._notifying:
            self._notifying[channel] = True
            return
        self._notifying[channel] = False
        task = asyncio.get_running_loop().create_task(self._send_notifications(channel))
        self._notifies.add(task)
        task.add_done_callback(self._notifies.discard)

    async def _send_notifications(self, channel: str) -> None:
        try:
            while True:
                self._notifying[channel] = False
                try:
                    await self.execute(Q.notify, channel)
                except Exception as exc:  # noqa: BLE001 - best effort: listeners poll too
                    log.warning("NOTIFY %s not sent (%s: %s); listeners find the rows at their next poll",
                                channel, type(exc).__name__, exc)
                    return
                if not self._notifying[channel]:
                    return
        finally:
            del self._notifying[channel]

    async def close(self) -> None:
        if self._notifies:  # the last commits' notifications, before the connections go
            await asyncio.wait(self._notifies, timeout=self.acquire_timeout)
        await self.raw.close()


_READS: dict[str, bool] = {}


def _is_read(sql: str) -> bool:
    """A statement that changes nothing (SELECT without FOR UPDATE/SHARE, or a plain CTE read)."""
    read = _READS.get(sql)
    if read is None:
        text = re.sub(r"--[^\n]*", "", sql).strip().upper()
        read = _READS[sql] = text.startswith(("SELECT", "WITH")) and not re.search(
            r"\b(INSERT|UPDATE|DELETE|FOR\s+(NO\s+KEY\s+)?UPDATE|FOR\s+(KEY\s+)?SHARE)\b", text)
    return read


POOL = web.AppKey("pool", Pool)


async def create_pool(config: Config, dsn: str | None = None) -> Pool:
    raw = await asyncpg.create_pool(
        dsn or config.database_url, min_size=config.pg_pool_min, max_size=config.pg_pool_max,
        command_timeout=config.pg_command_timeout, statement_cache_size=1024,
        init=_init_connection, reset=_keep_session, timeout=config.pg_acquire_timeout,  # connect timeout
        server_settings={"statement_timeout": str(int(config.pg_statement_timeout * 1000))},
        # Closed after a minute idle, so a burst's connections do not stay open for ever.
        max_inactive_connection_lifetime=60.0)
    return Pool(raw, config.pg_acquire_timeout)


async def pg_ctx(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await create_pool(app[CONFIG])
    yield
    await app[POOL].close()


@contextlib.asynccontextmanager
async def transaction(pool: Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection and one transaction for the statements of a write; committed on success.

    A connection found dead at BEGIN (its server process ended while it sat idle in the pool, before the
    pool noticed) is replaced once: nothing of the write has run on it yet. The pool's other connections
    are renewed then, as they are when a write fails on a lost connection.
    """
    for attempt in (1, 2):
        async with pool.acquire() as conn, contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(conn.transaction())  # BEGIN; the stack commits or rolls back
            except _CONNECTION_LOST:
                await pool.renew()
                if attempt == 2:
                    raise
                continue
            try:
                yield conn
            except _CONNECTION_LOST:
                await pool.renew()
                raise
            return
