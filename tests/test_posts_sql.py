"""The reads stay one database round trip each, and run on plans made once per connection.

Round trips are counted on the wire: the app talks to PostgreSQL through a small TCP proxy that reads the
client's protocol messages and counts each Sync (the end of an extended-protocol exchange, which is what
asyncpg sends for a prepared statement) and each simple Query. A later change that brings back N+1 reads,
or an extra statement per request, makes these tests fail whatever the code path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import struct
from urllib.parse import urlsplit, urlunsplit

import pytest

from server.app import create_app
from server.db import Q
from tests.posts_support import insert_user


class RoundTripCounter:
    """A loopback proxy in front of PostgreSQL that counts Sync and Query messages from its clients."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.round_trips = 0
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.port)
        tasks = {asyncio.ensure_future(self._client_to_server(client_r, server_w)),
                 asyncio.ensure_future(self._pipe(server_r, client_w))}
        self.tasks |= tasks
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_w, server_w):
            writer.close()

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The startup message has no type byte: a length, then the rest (sslmode=disable: no SSLRequest).
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        writer.write(struct.pack("!i", length) + await reader.readexactly(length - 4))
        while True:
            head = await reader.readexactly(5)
            kind, length = head[:1], struct.unpack("!i", head[1:])[0]
            if kind in (b"S", b"Q"):
                self.round_trips += 1
            writer.write(head + await reader.readexactly(length - 4))
            await writer.drain()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@pytest.fixture
async def counted_client(aiohttp_client, make_config, db):
    """A client of an app whose one pooled connection goes through the counting proxy."""
    dsn = urlsplit(make_config().database_url)
    proxy = RoundTripCounter(dsn.hostname, dsn.port)
    port = await proxy.start()
    netloc = f"{dsn.username}:{dsn.password}@127.0.0.1:{port}"
    proxied = urlunsplit((dsn.scheme, netloc, dsn.path, "sslmode=disable", ""))
    # The cache off: every read reaches PostgreSQL, where its round trips are counted.
    client = await aiohttp_client(create_app(make_config(database_url=proxied, pg_pool_min=1, pg_pool_max=1,
                                                         cache_enabled=False)))
    yield client, proxy
    await client.close()
    await proxy.stop()


async def _data(db) -> tuple[int, int]:
    """Two authors, 30 posts with three tags each, 15 comments on the first post."""
    a, b = await insert_user(db, "writer_a"), await insert_user(db, "writer_b")
    await db.execute("INSERT INTO posts (author_id, title, body) SELECT CASE WHEN g % 2 = 0 THEN $1::bigint ELSE $2::bigint END, "
                     "'post ' || g, 'body' FROM generate_series(1, 30) g", a, b)
    await db.execute("INSERT INTO tags (name) VALUES ('red'), ('green'), ('blue')")
    await db.execute("INSERT INTO post_tags (post_id, tag_id) SELECT p, t FROM generate_series(1, 30) p, "
                     "generate_series(1, 3) t")
    await db.execute("INSERT INTO comments (post_id, author_id, body) SELECT 1, CASE WHEN g % 2 = 0 THEN $1::bigint "
                     "ELSE $2::bigint END, 'c' || g FROM generate_series(1, 15) g", a, b)
    return a, b


READS = [
    "/api/posts/1",
    "/api/posts",
    "/api/posts?limit=100",
    "/api/posts?page=2&limit=5",
    "/api/posts?tag=red",
    "/api/posts?author={a}",
    "/api/posts?author={a}&tag=blue&page=2&limit=3",
    "/api/posts/1/comments",
    "/api/posts/1/comments?page=2&limit=4",
    "/api/comments/3",
    "/api/tags",
    "/api/users/{a}/posts",
]


@pytest.mark.parametrize("path", READS)
async def test_each_read_is_one_round_trip(counted_client, db, path):
    client, proxy = counted_client
    a, _ = await _data(db)
    path = path.format(a=a)
    first = await client.get(path)  # prepares the statement on the one pooled connection
    assert first.status == 200, await first.text()
    cursor = (await first.json()).get("meta", {}).get("nextCursor")
    for url in filter(None, [path, cursor and f"{path}{'&' if '?' in path else '?'}cursor={cursor}".replace(
            "page=2&", "")]):
        await client.get(url)
        before = proxy.round_trips
        response = await client.get(url)
        assert response.status == 200, await response.text()
        assert proxy.round_trips - before == 1, url


async def test_the_counter_sees_every_round_trip(counted_client, db):
    """The proxy can fail the tests above: a write is several round trips (BEGIN, statements, COMMIT)."""
    client, proxy = counted_client
    a, _ = await _data(db)
    await client.get("/api/posts/1")
    before = proxy.round_trips
    await client.get("/api/posts/1")
    await client.get("/api/posts/2")
    assert proxy.round_trips - before == 2


LIST_STATEMENTS = sorted(name for name in Q if name.startswith(("list_posts", "user_posts", "list_comments"))
                         ) + ["get_post", "get_comment", "list_tags"]


@pytest.mark.parametrize("name", LIST_STATEMENTS)
async def test_reads_run_on_their_generic_plan(db, name):
    """After PostgreSQL's five trial plans, every read keeps one generic plan: no planning per request."""
    a, _ = await _data(db)
    await db.execute("ANALYZE")
    mode = name.rsplit("_", 1)[-1]
    args = {"first": [20], "page": [20, 40], "after": [20, dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc), 10**9]
            }.get(mode, [])
    if "author" in name or name.startswith("user_posts"):
        args.append(a)
    if "tag" in name and name != "list_tags":
        args.append("red")
    if name.startswith(("list_comments", "get_")):
        args.append(1)
    if name == "list_tags":
        args.append(50)
    statement = await db.prepare(Q[name])
    for _ in range(8):
        await statement.fetch(*args)
    plans = await db.fetchrow("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
                              Q[name])
    assert plans["generic_plans"] >= 3, dict(plans)


async def test_a_tags_post_count_update_is_hot(db):
    """Linking and unlinking posts updates their tags' post_count in place (a HOT update: no new index
    entries, no dead version for the tag lookups of every list to walk): no index may cover the counter."""
    a = await insert_user(db, "writer")
    await db.execute("INSERT INTO tags (name) VALUES ('red'), ('green')")
    async with db.transaction():
        await db.execute("INSERT INTO posts (author_id, title, body) SELECT $1, 'post ' || g, 'body' "
                         "FROM generate_series(1, 5) g", a)
        await db.execute("INSERT INTO post_tags (post_id, tag_id) SELECT p, t FROM generate_series(1, 5) p, "
                         "generate_series(1, 2) t")
        await db.execute("DELETE FROM post_tags WHERE post_id = 1")
        counts = await db.fetchrow("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                                   "WHERE relname = 'tags'")
    assert counts["n_tup_upd"] >= 2 and counts["n_tup_hot_upd"] == counts["n_tup_upd"], dict(counts)
    assert [tuple(r) for r in await db.fetch("SELECT name, post_count FROM tags ORDER BY name")] == [
        ("green", 4), ("red", 4)]
