"""EXPLAIN (ANALYZE, BUFFERS) of every hot read of posts, comments and tags, as the server runs them.

Each read is prepared and executed eight times first, so that what is explained is the plan PostgreSQL
keeps for the connection (the generic plan: tests/test_posts_sql.py checks that it is chosen), then
explained twice; the second, warm run is recorded.

    python perf/query_plans.py DSN [--plans] > plans.md

Prints a table (buffers and execution time of each read) and, with --plans, every plan in full.
"""

from __future__ import annotations

import asyncio
import re
import sys

import asyncpg

sys.path.insert(0, ".")
from server.db import Q  # noqa: E402


async def _samples(conn) -> dict:
    """Representative arguments: a popular and a typical post, tag and author; keys in mid-list."""
    s = {}
    s["popular_post"] = await conn.fetchval("SELECT post_id FROM post_stats ORDER BY comment_count DESC LIMIT 1")
    s["typical_post"] = await conn.fetchval("SELECT post_id FROM post_stats WHERE comment_count BETWEEN 8 AND 12 "
                                            "ORDER BY post_id LIMIT 1")
    s["popular_tag"] = await conn.fetchval("SELECT name FROM tags ORDER BY post_count DESC, name LIMIT 1")
    s["rare_tag"] = await conn.fetchval("SELECT name FROM tags WHERE post_count > 0 ORDER BY post_count, name LIMIT 1")
    s["prolific_author"] = await conn.fetchval("SELECT author_id FROM author_post_counts ORDER BY post_count DESC "
                                               "LIMIT 1")
    total = await conn.fetchval("SELECT count(*) FROM posts")
    s["mid_post_key"] = tuple(await conn.fetchrow(
        "SELECT created_at, id FROM posts ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1", total // 2))
    s["mid_tag_key"] = tuple(await conn.fetchrow(
        "SELECT post_created_at, post_id FROM post_tags WHERE tag_id = (SELECT id FROM tags WHERE name = $1) "
        "ORDER BY post_created_at DESC, post_id DESC OFFSET (SELECT post_count / 2 FROM tags WHERE name = $1) "
        "LIMIT 1", s["popular_tag"]))
    s["mid_author_key"] = tuple(await conn.fetchrow(
        "SELECT created_at, id FROM posts WHERE author_id = $1 ORDER BY created_at DESC, id DESC "
        "OFFSET (SELECT post_count / 2 FROM author_post_counts WHERE author_id = $1) LIMIT 1", s["prolific_author"]))
    s["mid_comment_key"] = tuple(await conn.fetchrow(
        "SELECT created_at, id FROM comments WHERE post_id = $1 ORDER BY created_at DESC, id DESC "
        "OFFSET (SELECT comment_count / 2 FROM post_stats WHERE post_id = $1) LIMIT 1", s["popular_post"]))
    s["comment"] = await conn.fetchval("SELECT id FROM comments WHERE post_id = $1 LIMIT 1", s["typical_post"])
    # The deepest page page mode reaches (page x limit <= 10,000) that still has 20 items.
    s["deep_posts"] = min(10_000, total) - 20
    s["deep_tag"] = min(10_000, await conn.fetchval("SELECT post_count FROM tags WHERE name = $1",
                                                    s["popular_tag"])) - 20
    s["deep_comments"] = min(10_000, await conn.fetchval("SELECT comment_count FROM post_stats WHERE post_id = $1",
                                                         s["popular_post"])) - 20
    return s


def _reads(s: dict) -> list[tuple[str, str, str, tuple]]:
    """(what, HTTP request, statement, arguments) for every hot read."""
    return [
        ("one post, 10 newest of its many comments", "GET /api/posts/{popular}", "get_post", (s["popular_post"],)),
        ("one post, a typical one", "GET /api/posts/{typical}", "get_post", (s["typical_post"],)),
        ("newest posts, first page", "GET /api/posts", "list_posts_first", (20,)),
        ("newest posts, deepest page", f"GET /api/posts?page={s['deep_posts'] // 20 + 1}", "list_posts_page",
         (20, s["deep_posts"])),
        ("newest posts, cursor mid-list", "GET /api/posts?cursor=...", "list_posts_after", (20, *s["mid_post_key"])),
        ("a popular tag, first page", "GET /api/posts?tag={popular}", "list_posts_by_tag_first",
         (20, s["popular_tag"])),
        ("a rare tag, first page", "GET /api/posts?tag={rare}", "list_posts_by_tag_first", (20, s["rare_tag"])),
        ("a popular tag, deepest page", f"GET /api/posts?tag={{popular}}&page={s['deep_tag'] // 20 + 1}",
         "list_posts_by_tag_page", (20, s["deep_tag"], s["popular_tag"])),
        ("a popular tag, cursor mid-list", "GET /api/posts?tag={popular}&cursor=...", "list_posts_by_tag_after",
         (20, *s["mid_tag_key"], s["popular_tag"])),
        ("an author, first page", "GET /api/posts?author={prolific}", "list_posts_by_author_first",
         (20, s["prolific_author"])),
        ("an author, cursor mid-list", "GET /api/posts?author={prolific}&cursor=...", "list_posts_by_author_after",
         (20, *s["mid_author_key"], s["prolific_author"])),
        ("an author and a tag, first page", "GET /api/posts?author={prolific}&tag={popular}",
         "list_posts_by_author_tag_first", (20, s["prolific_author"], s["popular_tag"])),
        ("a user and their posts, first page", "GET /api/users/{prolific}/posts", "user_posts_first",
         (20, s["prolific_author"])),
        ("a user and their posts, cursor mid-list", "GET /api/users/{prolific}/posts?cursor=...", "user_posts_after",
         (20, *s["mid_author_key"], s["prolific_author"])),
        ("a post's comments, first page", "GET /api/posts/{popular}/comments", "list_comments_first",
         (20, s["popular_post"])),
        ("a post's comments, cursor mid-list", "GET /api/posts/{popular}/comments?cursor=...", "list_comments_after",
         (20, *s["mid_comment_key"], s["popular_post"])),
        ("a post's comments, deepest page", f"GET /api/posts/{{popular}}/comments?page={s['deep_comments'] // 20 + 1}",
         "list_comments_page", (20, s["deep_comments"], s["popular_post"])),
        ("one comment", "GET /api/comments/{id}", "get_comment", (s["comment"],)),
        ("tags, most used first", "GET /api/tags", "list_tags", (50,)),
    ]


_BUFFERS = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")


async def explain(conn, name: str, args: tuple) -> tuple[str, int, int, float, float]:
    """The warm EXPLAIN (ANALYZE, BUFFERS) of statement `name`, run as asyncpg runs it: prepared, reused."""
    types = ", ".join(t.name for t in (await conn.prepare(Q[name])).get_parameters())
    await conn.execute(f"PREPARE explained ({types}) AS {Q[name]}")
    literal = ", ".join(_literal(a) for a in args)
    for _ in range(8):  # past PostgreSQL's five trial plans: the plan kept for the connection
        await conn.execute(f"EXECUTE explained ({literal})")
    for _ in range(2):
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE explained ({literal})"))
    await conn.execute("DEALLOCATE explained")
    top = _BUFFERS.search(plan)
    hit, read = (int(top.group(1) or 0), int(top.group(2) or 0)) if top else (0, 0)
    planning = float(re.search(r"Planning Time: ([\d.]+)", plan).group(1))
    execution = float(re.search(r"Execution Time: ([\d.]+)", plan).group(1))
    return plan, hit, read, planning, execution


def _literal(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def main(dsn: str, with_plans: bool) -> None:
    conn = await asyncpg.connect(dsn)
    counts = await conn.fetchrow("SELECT (SELECT count(*) FROM posts) AS posts, (SELECT count(*) FROM comments) "
                                 "AS comments, (SELECT count(*) FROM post_tags) AS links, "
                                 "(SELECT count(*) FROM users) AS users, (SELECT count(*) FROM tags) AS tags")
    samples = await _samples(conn)
    print(f"Data: {counts['posts']:,} posts, {counts['comments']:,} comments, {counts['links']:,} post_tags, "
          f"{counts['users']:,} users, {counts['tags']:,} tags. Samples: " +
          ", ".join(f"{k}={v}" for k, v in samples.items() if not k.endswith("key")) + ".\n")
    print("| read | request | statement | buffers (shared hit + read) | planning ms | execution ms |")
    print("|---|---|---|---|---|---|")
    plans = []
    for what, request, name, args in _reads(samples):
        plan, hit, read, planning, execution = await explain(conn, name, args)
        print(f"| {what} | `{request}` | `{name}` | {hit + read} | {planning:.3f} | {execution:.3f} |")
        plans.append((what, request, name, plan))
    if with_plans:
        for what, request, name, plan in plans:
            print(f"\n#### {what}: `{request}` (`{name}`)\n\n```\n{plan}\n```")
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--plans" in sys.argv[2:]))
