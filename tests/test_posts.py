"""Posts: create, read, patch, delete, the newest-first lists with their filters, paging and cursors."""

from __future__ import annotations

import datetime as dt

from tests.posts_support import create_comment, create_post, expected_post, expected_summary, insert_user

UTC = dt.timezone.utc


async def test_create_answers_201_with_location_and_the_post_as_get_shows_it(client, db, alice):
    response = await client.post("/api/posts", json={"title": "Hello, Wörld", "body": "Line one\nline two\ttab",
                                                     "tags": [" Python ", "python", "GO-lang", "web"]},
                                 headers=alice.headers)
    assert response.status == 201
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    post_id = body["data"]["id"]
    assert response.headers["Location"] == f"/api/posts/{post_id}"
    expected = await expected_post(db, post_id)
    assert body == {"data": expected}
    assert expected["tags"] == ["go-lang", "python", "web"]  # trimmed, lower-cased, de-duplicated, by name
    assert expected["author"] == {"id": alice.id, "username": "alice", "displayName": ""}
    assert expected["commentCount"] == 0 and expected["comments"] == []
    assert expected["createdAt"] == expected["updatedAt"]
    assert await (await client.get(f"/api/posts/{post_id}")).json() == body


async def test_tags_are_optional_and_created_once(client, db, alice, bob):
    plain = await create_post(client, alice)
    assert plain["tags"] == []
    await create_post(client, alice, tags=["shared"])
    await create_post(client, bob, tags=["SHARED", "new"])
    assert await db.fetch("SELECT name, post_count FROM tags ORDER BY name") == [("new", 1), ("shared", 2)]


async def test_a_post_shows_its_ten_newest_comments_and_the_exact_count(client, db, alice, bob):
    post = await create_post(client, alice, tags=["t"])
    for i in range(12):
        await create_comment(client, bob if i % 2 else alice, post["id"], f"comment {i}")
    body = await (await client.get(f"/api/posts/{post['id']}")).json()
    assert body == {"data": await expected_post(db, post["id"])}
    assert body["data"]["commentCount"] == 12
    assert [c["body"] for c in body["data"]["comments"]] == [f"comment {i}" for i in range(11, 1, -1)]


async def test_unknown_post_is_404(client, db):
    response = await client.get("/api/posts/424242")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_timestamps_print_microseconds_only_when_not_zero_like_the_users_code(client, db):
    user_id = await insert_user(db, "loader", display_name=None)
    post_id = await db.fetchval("INSERT INTO posts (author_id, title, body, created_at, updated_at) "
                                "VALUES ($1, 't', 'b', '2020-01-02T03:04:05Z', '2020-01-02T03:04:05.5+02') "
                                "RETURNING id", user_id)
    data = (await (await client.get(f"/api/posts/{post_id}")).json())["data"]
    assert data["createdAt"] == "2020-01-02T03:04:05Z"
    assert data["updatedAt"] == "2020-01-02T01:04:05.500000Z"
    assert data["author"] == {"id": user_id, "username": "loader", "displayName": ""}  # NULL reads as ''


async def test_posts_and_comments_of_a_deleted_author_stay_with_the_public_author_view(client, db, alice, bob):
    post = await create_post(client, bob, tags=["kept"])
    await create_comment(client, bob, post["id"])
    assert (await client.delete(f"/api/users/{bob.id}", headers=bob.headers)).status == 204
    body = await (await client.get(f"/api/posts/{post['id']}")).json()
    assert body == {"data": await expected_post(db, post["id"])}
    assert body["data"]["author"] == {"id": bob.id, "username": "bob", "displayName": ""}
    listed = await (await client.get(f"/api/posts?author={bob.id}")).json()
    assert [p["id"] for p in listed["data"]] == [post["id"]] and listed["meta"]["total"] == 1
    assert (await client.get(f"/api/users/{bob.id}/posts")).status == 404


async def _posts_at(db, author_id: int, count: int, tags_of=lambda i: ()) -> list[int]:
    """`count` posts written straight into the tables, one minute apart, the last one newest."""
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(count):
        post_id = await db.fetchval("INSERT INTO posts (author_id, title, body, created_at, updated_at) "
                                    "VALUES ($1, $2, 'body', $3, $3) RETURNING id",
                                    author_id, f"post {i}", start + dt.timedelta(minutes=i))
        for name in tags_of(i):
            await db.execute("INSERT INTO tags (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
            await db.execute("INSERT INTO post_tags (post_id, tag_id) SELECT $1, id FROM tags WHERE name = $2",
                             post_id, name)
        ids.append(post_id)
    return ids


async def test_list_is_newest_first_with_exact_total_pages_and_whole_summaries(client, db):
    author_id = await insert_user(db, "writer", "Writer")
    ids = await _posts_at(db, author_id, 7, lambda i: ["odd"] if i % 2 else ["even", "all"])
    newest_first = ids[::-1]
    body = await (await client.get("/api/posts?limit=3")).json()
    assert body["data"] == [await expected_summary(db, i) for i in newest_first[:3]]
    assert body["meta"]["page"] == 1 and body["meta"]["limit"] == 3 and body["meta"]["total"] == 7
    assert body["meta"]["nextCursor"]
    second = await (await client.get("/api/posts?limit=3&page=2")).json()
    assert [p["id"] for p in second["data"]] == newest_first[3:6]
    last = await (await client.get("/api/posts?limit=3&page=3")).json()
    assert [p["id"] for p in last["data"]] == newest_first[6:]
    assert last["meta"] == {"page": 3, "limit": 3, "total": 7, "nextCursor": None}
    beyond = await (await client.get("/api/posts?limit=3&page=9")).json()
    assert beyond == {"data": [], "meta": {"page": 9, "limit": 3, "total": 7, "nextCursor": None}}
    default = await (await client.get("/api/posts")).json()
    assert default["meta"] == {"page": 1, "limit": 20, "total": 7, "nextCursor": None}
    assert [p["id"] for p in default["data"]] == newest_first


async def test_equal_timestamps_are_ordered_by_id(client, db):
    author_id = await insert_user(db, "writer")
    ids = [await db.fetchval("INSERT INTO posts (author_id, title, body, created_at) VALUES ($1, 't', 'b', "
                             "'2024-05-05T00:00:00Z') RETURNING id", author_id) for _ in range(5)]
    seen, url = [], "/api/posts?limit=2"
    while url:
        body = await (await client.get(url)).json()
        seen += [p["id"] for p in body["data"]]
        url = f"/api/posts?limit=2&cursor={body['meta']['nextCursor']}" if body["meta"]["nextCursor"] else None
    assert seen == ids[::-1]


async def test_cursor_walk_visits_every_post_once_and_repeats_the_filters(client, db):
    author_id = await insert_user(db, "writer")
    other_id = await insert_user(db, "other")
    ids = await _posts_at(db, author_id, 11, lambda i: ["walk"] if i % 3 else ["skip"])
    await _posts_at(db, other_id, 4, lambda i: ["walk"])
    expected = [i for n, i in enumerate(ids) if n % 3][::-1]
    seen, url = [], f"/api/posts?author={author_id}&tag=walk&limit=2"
    first = True
    while url:
        body = await (await client.get(url)).json()
        assert body["meta"]["total"] == len(expected)
        assert ("page" in body["meta"]) is first
        seen += [p["id"] for p in body["data"]]
        cursor, first = body["meta"]["nextCursor"], False
        url = f"/api/posts?author={author_id}&tag=walk&limit=2&cursor={cursor}" if cursor else None
    assert seen == expected


async def test_filters_by_tag_author_and_both(client, db, alice, bob):
    a1 = await create_post(client, alice, tags=["python", "web"])
    a2 = await create_post(client, alice, tags=["go"])
    b1 = await create_post(client, bob, tags=["Python"])

    async def listed(query):
        body = await (await client.get(f"/api/posts?{query}")).json()
        return [p["id"] for p in body["data"]], body["meta"]["total"]

    assert await listed("tag=python") == ([b1["id"], a1["id"]], 2)
    assert await listed("tag=%20PYTHON%20") == ([b1["id"], a1["id"]], 2)  # normalised like a post's tags
    assert await listed(f"author={alice.id}") == ([a2["id"], a1["id"]], 2)
    assert await listed(f"author={bob.id}&tag=python") == ([b1["id"]], 1)
    assert await listed(f"author={bob.id}&tag=go") == ([], 0)
    assert await listed("tag=never-used") == ([], 0)
    assert await listed("author=999999") == ([], 0)
    assert await listed("tag=web&page=2&limit=1") == ([], 1)
    body = await (await client.get("/api/posts?tag=python&limit=1")).json()
    assert body["data"] == [await expected_summary(db, b1["id"])]
    assert body["meta"]["total"] == 2 and body["meta"]["nextCursor"]


async def test_patch_changes_given_fields_and_answers_as_get(client, db, alice):
    post = await create_post(client, alice, title="Old", body="Old body", tags=["a", "b"])
    response = await client.patch(f"/api/posts/{post['id']}", json={"title": "New"}, headers=alice.headers)
    assert response.status == 200
    body = await response.json()
    assert body == {"data": await expected_post(db, post["id"])}
    assert body["data"]["title"] == "New" and body["data"]["body"] == "Old body"
    assert body["data"]["tags"] == ["a", "b"] and body["data"]["updatedAt"] > post["updatedAt"]
    assert body == await (await client.get(f"/api/posts/{post['id']}")).json()


async def test_patch_tags_replaces_the_set_and_keeps_counts(client, db, alice):
    post = await create_post(client, alice, tags=["a", "b", "c"])
    other = await create_post(client, alice, tags=["b"])
    response = await client.patch(f"/api/posts/{post['id']}", json={"tags": ["C", "d", " d "]},
                                  headers=alice.headers)
    assert (await response.json())["data"]["tags"] == ["c", "d"]
    assert await db.fetch("SELECT name, post_count FROM tags ORDER BY name") == [
        ("a", 0), ("b", 1), ("c", 1), ("d", 1)]
    cleared = await client.patch(f"/api/posts/{post['id']}", json={"tags": []}, headers=alice.headers)
    assert (await cleared.json())["data"]["tags"] == []
    tags = await (await client.get("/api/tags")).json()
    assert tags == {"data": [{"name": "b", "postCount": 1}]}
    assert (await (await client.get(f"/api/posts/{other['id']}")).json())["data"]["tags"] == ["b"]


async def test_empty_patch_changes_nothing(client, db, alice):
    post = await create_post(client, alice, tags=["x"])
    response = await client.patch(f"/api/posts/{post['id']}", json={}, headers=alice.headers)
    assert response.status == 200
    assert (await response.json())["data"] == post


async def test_delete_answers_204_and_takes_comments_and_counts_with_it(client, db, alice, bob):
    post = await create_post(client, alice, tags=["gone"])
    kept = await create_post(client, alice, tags=["kept"])
    comment = await create_comment(client, bob, post["id"])
    response = await client.delete(f"/api/posts/{post['id']}", headers=alice.headers)
    assert response.status == 204 and await response.read() == b""
    assert (await client.get(f"/api/posts/{post['id']}")).status == 404
    assert (await client.get(f"/api/comments/{comment['id']}")).status == 404
    assert (await client.delete(f"/api/posts/{post['id']}", headers=alice.headers)).status == 404
    listed = await (await client.get("/api/posts")).json()
    assert [p["id"] for p in listed["data"]] == [kept["id"]] and listed["meta"]["total"] == 1
    assert await (await client.get("/api/tags")).json() == {"data": [{"name": "kept", "postCount": 1}]}


async def test_user_posts_aggregate_is_the_public_user_and_their_summaries(client, db, alice, bob):
    await db.execute("UPDATE users SET display_name = 'Alice A.', bio = 'hi' WHERE id = $1", alice.id)
    mine = [await create_post(client, alice, title=f"mine {i}", tags=["t"]) for i in range(3)]
    await create_post(client, bob)
    response = await client.get(f"/api/users/{alice.id}/posts?limit=2")
    assert response.status == 200
    body = await response.json()
    user = (await (await client.get(f"/api/users/{alice.id}")).json())["data"]
    assert body["data"] == {"user": user, "posts": [await expected_summary(db, p["id"]) for p in mine[:0:-1]]}
    assert set(user) == {"id", "username", "displayName", "bio", "createdAt"}
    assert body["meta"]["total"] == 3 and body["meta"]["page"] == 1 and body["meta"]["limit"] == 2
    rest = await (await client.get(f"/api/users/{alice.id}/posts?limit=2&cursor={body['meta']['nextCursor']}")).json()
    assert [p["id"] for p in rest["data"]["posts"]] == [mine[0]["id"]]
    assert rest["meta"] == {"limit": 2, "total": 3, "nextCursor": None}
    page2 = await (await client.get(f"/api/users/{alice.id}/posts?limit=2&page=2")).json()
    assert [p["id"] for p in page2["data"]["posts"]] == [mine[0]["id"]]
    none = await (await client.get(f"/api/users/{bob.id}/posts?page=3")).json()
    assert none["data"]["posts"] == [] and none["meta"]["total"] == 1
    assert (await client.get("/api/users/987654/posts")).status == 404


async def test_rows_written_by_outside_loaders_are_counted_and_listed(client, db):
    """Scenario: a loader writes users, posts, tags, links and comments with plain INSERTs and COPY."""
    author_id = await insert_user(db, "bulk")
    await db.execute("INSERT INTO posts (author_id, title, body) SELECT $1, 'p' || g, 'b' FROM generate_series(1, 30) g",
                     author_id)
    await db.execute("INSERT INTO tags (name) VALUES ('bulk')")
    await db.copy_records_to_table("post_tags", records=[(i, 1) for i in range(1, 31, 2)],
                                   columns=["post_id", "tag_id"])
    await db.copy_records_to_table("comments", records=[(1 + i % 3, author_id, f"c{i}") for i in range(40)],
                                   columns=["post_id", "author_id", "body"])
    assert (await (await client.get("/api/posts?limit=1")).json())["meta"]["total"] == 30
    assert (await (await client.get("/api/posts?tag=bulk")).json())["meta"]["total"] == 15
    assert (await (await client.get(f"/api/posts?author={author_id}&tag=bulk")).json())["meta"]["total"] == 15
    assert (await (await client.get("/api/posts/1")).json())["data"]["commentCount"] == 14
    assert (await (await client.get("/api/posts/2/comments")).json())["meta"]["total"] == 13
    assert await (await client.get("/api/tags")).json() == {"data": [{"name": "bulk", "postCount": 15}]}
