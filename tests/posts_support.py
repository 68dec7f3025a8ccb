"""Helpers of the posts, comments and tags tests: the expected JSON of a resource, built from its rows.

The expected bodies are built here in Python from plain SELECTs, independently of the SQL that builds
the answers, and timestamps are printed by orjson exactly as the rest of the API prints them.
"""

from __future__ import annotations

import asyncpg
import orjson


def iso(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode().strip('"')


async def create_post(client, actor, title: str = "A title", body: str = "A body", tags=None) -> dict:
    payload = {"title": title, "body": body}
    if tags is not None:
        payload["tags"] = list(tags)
    response = await client.post("/api/posts", json=payload, headers=actor.headers)
    assert response.status == 201, await response.text()
    return (await response.json())["data"]


async def create_comment(client, actor, post_id: int, body: str = "A comment") -> dict:
    response = await client.post(f"/api/posts/{post_id}/comments", json={"body": body}, headers=actor.headers)
    assert response.status == 201, await response.text()
    return (await response.json())["data"]


async def author(db: asyncpg.Connection, user_id: int) -> dict:
    row = await db.fetchrow("SELECT id, username, display_name FROM users WHERE id = $1", user_id)
    return {"id": row["id"], "username": row["username"], "displayName": row["display_name"] or ""}


async def expected_summary(db: asyncpg.Connection, post_id: int) -> dict:
    p = await db.fetchrow("SELECT * FROM posts WHERE id = $1", post_id)
    tags = await db.fetch("SELECT t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = $1 "
                          "ORDER BY t.name", post_id)
    return {"id": p["id"], "title": p["title"], "createdAt": iso(p["created_at"]), "updatedAt": iso(p["updated_at"]),
            "author": await author(db, p["author_id"]), "tags": [t["name"] for t in tags],
            "commentCount": await db.fetchval("SELECT count(*) FROM comments WHERE post_id = $1", post_id)}


async def expected_comment(db: asyncpg.Connection, comment_id: int, with_post_id: bool = True) -> dict:
    c = await db.fetchrow("SELECT * FROM comments WHERE id = $1", comment_id)
    comment = {"id": c["id"], "postId": c["post_id"], "body": c["body"], "createdAt": iso(c["created_at"]),
               "author": await author(db, c["author_id"])}
    if not with_post_id:
        del comment["postId"]
    return comment


async def expected_post(db: asyncpg.Connection, post_id: int) -> dict:
    newest = await db.fetch("SELECT id FROM comments WHERE post_id = $1 ORDER BY created_at DESC, id DESC LIMIT 10",
                            post_id)
    return {**await expected_summary(db, post_id),
            "body": await db.fetchval("SELECT body FROM posts WHERE id = $1", post_id),
            "comments": [await expected_comment(db, r["id"], with_post_id=False) for r in newest]}


async def insert_user(db: asyncpg.Connection, username: str, display_name: str | None = "") -> int:
    """A user written straight into the table, as an outside loader would (nobody logs in as them)."""
    return await db.fetchval("INSERT INTO users (email, username, password_hash, display_name) "
                             "VALUES ($1 || '@example.com', $1, 'x', $2) RETURNING id", username, display_name)


# Every counter the triggers keep, against a fresh count of the rows: the rows of this query are the drift.
COUNTER_DRIFT = """
SELECT 'post_stats.comment_count' AS counter, p::text AS key, coalesce(kept, 0) AS kept, coalesce(actual, 0) AS actual
FROM (SELECT post_id AS p, comment_count AS kept FROM post_stats) k
FULL JOIN (SELECT post_id AS p, count(*) AS actual FROM comments GROUP BY post_id) c USING (p)
WHERE coalesce(kept, 0) <> coalesce(actual, 0)
UNION ALL
SELECT 'post_stats of a deleted post', s.post_id::text, s.comment_count, 0
FROM post_stats s WHERE NOT EXISTS (SELECT FROM posts WHERE id = s.post_id)
UNION ALL
SELECT 'tags.post_count', t.id::text, t.post_count, count(pt.post_id)
FROM tags t LEFT JOIN post_tags pt ON pt.tag_id = t.id GROUP BY t.id HAVING t.post_count <> count(pt.post_id)
UNION ALL
SELECT 'author_post_counts', a::text, coalesce(kept, 0), coalesce(actual, 0)
FROM (SELECT author_id AS a, post_count AS kept FROM author_post_counts) k
FULL JOIN (SELECT author_id AS a, count(*) AS actual FROM posts GROUP BY author_id) c USING (a)
WHERE coalesce(kept, 0) <> coalesce(actual, 0)
UNION ALL
SELECT 'author_tag_post_counts', a::text || '/' || t::text, coalesce(kept, 0), coalesce(actual, 0)
FROM (SELECT author_id AS a, tag_id AS t, post_count AS kept FROM author_tag_post_counts) k
FULL JOIN (SELECT p.author_id AS a, pt.tag_id AS t, count(*) AS actual
           FROM post_tags pt JOIN posts p ON p.id = pt.post_id GROUP BY 1, 2) c USING (a, t)
WHERE coalesce(kept, 0) <> coalesce(actual, 0)
UNION ALL
SELECT 'post_total_shards', 'all', (SELECT sum(post_count) FROM post_total_shards)::bigint,
       (SELECT count(*) FROM posts)
WHERE (SELECT sum(post_count) FROM post_total_shards) <> (SELECT count(*) FROM posts)
UNION ALL
SELECT 'post_tags copies', pt.post_id::text || '/' || pt.tag_id::text, 0, 1
FROM post_tags pt JOIN posts p ON p.id = pt.post_id
WHERE pt.post_created_at <> p.created_at OR pt.post_author_id <> p.author_id
"""
