"""Micro-benchmark: who builds the JSON of GET /api/posts/{id} and of a list page, PostgreSQL or Python?

Run against a migrated database holding some posts (the numbers in docs/query-plans.md came from 10^4
posts, 10^5 comments):  python perf/bench_post_json.py DSN [iterations]

Each variant runs on one connection, sequentially, so the time is the whole cost of one read as the
handler pays it: the round trip, PostgreSQL's work, asyncpg's decoding and the Python that makes bytes.
  sql-json       json_build_object / json_agg (the shipped statements), the text goes straight out
  sql-compact    row_to_json of composite types / array_to_json: the same JSON without spaces
  python-dicts   plain columns and arrays of records, dicts built in Python, serialised by orjson
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
import orjson

sys.path.insert(0, ".")
from perf.cpu import TICK, ticks  # noqa: E402
from server.db import Q  # noqa: E402

TYPES = """
DROP TYPE IF EXISTS bench_author, bench_summary CASCADE;
CREATE TYPE bench_author AS (id bigint, username text, "displayName" text);
CREATE TYPE bench_summary AS (id bigint, title text, "createdAt" text, "updatedAt" text, author bench_author,
                              tags json, "commentCount" bigint);
"""

KEYS = """(SELECT id, created_at, row_number() OVER (ORDER BY created_at DESC, id DESC) AS n
      FROM (SELECT id, created_at FROM posts ORDER BY created_at DESC, id DESC LIMIT 101) s) k"""

COMPACT_LIST = f"""
SELECT (SELECT sum(post_count) FROM post_total_shards)::bigint AS total,
       coalesce(array_to_json(array_agg((SELECT ROW(p.id, p.title, api_ts(p.created_at), api_ts(p.updated_at),
                ROW(u.id, u.username, coalesce(u.display_name, ''))::bench_author,
                (SELECT coalesce(array_to_json(array_agg(t.name ORDER BY t.name)), '[]')
                 FROM (SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags
                       WHERE post_id = p.id) t),
                coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0))::bench_summary
                FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = k.id)
                ORDER BY k.n) FILTER (WHERE k.n <= $1)), '[]')::text AS data,
       count(*) > $1 AS more
FROM {KEYS}
WHERE k.n <= $1 + 1
"""

PY_POST = """
SELECT p.id, p.title, p.created_at, p.updated_at, p.body,
       coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0) AS comment_count,
       u.id AS author_id, u.username, coalesce(u.display_name, '') AS display_name,
       array(SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id
             ORDER BY 1) AS tags,
       array(SELECT ROW(c.id, c.body, c.created_at, cu.id, cu.username, coalesce(cu.display_name, ''))
             FROM (SELECT id, author_id, body, created_at FROM comments WHERE post_id = p.id
                   ORDER BY created_at DESC, id DESC LIMIT 10) c
             CROSS JOIN LATERAL (SELECT * FROM users WHERE id = c.author_id OFFSET 0) cu
             ORDER BY c.created_at DESC, c.id DESC) AS comments
FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = $1
"""

PY_LIST = f"""
SELECT (SELECT sum(post_count) FROM post_total_shards)::bigint AS total, p.id, p.title, p.created_at,
       p.updated_at, coalesce((SELECT comment_count FROM post_stats WHERE post_id = p.id), 0) AS comment_count,
       u.id AS author_id, u.username, coalesce(u.display_name, '') AS display_name,
       array(SELECT (SELECT name FROM tags WHERE id = tag_id) AS name FROM post_tags WHERE post_id = p.id
             ORDER BY 1) AS tags
FROM {KEYS}
JOIN posts p ON p.id = k.id JOIN users u ON u.id = p.author_id
WHERE k.n <= $1 + 1
ORDER BY k.n
"""

OPT = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def _author(i, username, display_name):
    return {"id": i, "username": username, "displayName": display_name}


async def py_post(conn, post_id):
    r = await conn.fetchrow(PY_POST, post_id)
    post = {"id": r["id"], "title": r["title"], "createdAt": r["created_at"], "updatedAt": r["updated_at"],
            "author": _author(r["author_id"], r["username"], r["display_name"]), "tags": r["tags"],
            "commentCount": r["comment_count"], "body": r["body"],
            "comments": [{"id": c[0], "body": c[1], "createdAt": c[2], "author": _author(c[3], c[4], c[5])}
                         for c in r["comments"]]}
    return orjson.dumps({"data": post}, option=OPT)


async def py_list(conn, limit):
    rows = await conn.fetch(PY_LIST, limit)
    items = [{"id": r["id"], "title": r["title"], "createdAt": r["created_at"], "updatedAt": r["updated_at"],
              "author": _author(r["author_id"], r["username"], r["display_name"]), "tags": r["tags"],
              "commentCount": r["comment_count"]} for r in rows[:limit]]
    return orjson.dumps({"data": items, "meta": {"limit": limit, "total": rows[0]["total"], "page": 1}}, option=OPT)


async def sql_post(conn, post_id):
    return b'{"data":' + (await conn.fetchval(Q.get_post, post_id)).encode() + b"}"


async def sql_list(conn, limit, sql=Q.list_posts_first):
    row = await conn.fetchrow(sql, limit)
    meta = orjson.dumps({"limit": limit, "total": row["total"], "page": 1})
    return b'{"data":' + row["data"].encode() + b',"meta":' + meta + b"}"


def server_cpu(pid: int) -> float:
    """Seconds of CPU the backend process has used (user + system), from /proc (same machine only)."""
    return sum(ticks([pid])) / TICK


async def timed(name, fn, n, backend):
    """CPU per operation, client (this process) and server (the backend), so that other load on the
    machine does not count; the wall time is shown too but is only meaningful on an idle machine."""
    for _ in range(50):
        out = await fn()
    wall0, client0, server0 = time.perf_counter(), time.process_time(), server_cpu(backend)
    for _ in range(n):
        await fn()
    wall = (time.perf_counter() - wall0) / n * 1e6
    client = (time.process_time() - client0) / n * 1e6
    server = (server_cpu(backend) - server0) / n * 1e6
    print(f"{name:24s} cpu {client + server:7.1f} µs/op = client {client:6.1f} + server {server:6.1f}"
          f"   (wall {wall:7.1f})  {len(out)} bytes")


async def main(dsn, n):
    conn = await asyncpg.connect(dsn)
    await conn.execute(TYPES)
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    post_id = await conn.fetchval("SELECT post_id FROM comments GROUP BY post_id HAVING count(*) >= 10 LIMIT 1")
    await timed("get_post sql-json", lambda: sql_post(conn, post_id), n, backend)
    await timed("get_post python-dicts", lambda: py_post(conn, post_id), n, backend)
    await timed("list(20) sql-json", lambda: sql_list(conn, 20), n, backend)
    await timed("list(20) sql-compact", lambda: sql_list(conn, 20, COMPACT_LIST), n, backend)
    await timed("list(20) python-dicts", lambda: py_list(conn, 20), n, backend)
    await timed("list(100) sql-json", lambda: sql_list(conn, 100), n // 2, backend)
    await timed("list(100) sql-compact", lambda: sql_list(conn, 100, COMPACT_LIST), n // 2, backend)
    await timed("list(100) python-dicts", lambda: py_list(conn, 100), n // 2, backend)
    await conn.execute("DROP TYPE bench_author, bench_summary CASCADE")
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
