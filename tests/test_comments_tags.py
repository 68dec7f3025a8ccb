"""Comments (create, read, list, delete) and the tags list."""

from __future__ import annotations

from tests.posts_support import create_comment, create_post, expected_comment, expected_post, insert_user


async def test_create_comment_answers_201_with_location_and_the_comment(client, db, alice, bob):
    post = await create_post(client, alice)
    response = await client.post(f"/api/posts/{post['id']}/comments", json={"body": "Nice post!\nReally."},
                                 headers=bob.headers)
    assert response.status == 201
    body = await response.json()
    comment_id = body["data"]["id"]
    assert response.headers["Location"] == f"/api/comments/{comment_id}"
    assert body == {"data": await expected_comment(db, comment_id)}
    assert body["data"]["postId"] == post["id"] and body["data"]["body"] == "Nice post!\nReally."
    assert body["data"]["author"] == {"id": bob.id, "username": "bob", "displayName": ""}
    assert await (await client.get(f"/api/comments/{comment_id}")).json() == body
    assert (await (await client.get(f"/api/posts/{post['id']}")).json())["data"]["commentCount"] == 1


async def test_comment_on_an_unknown_post_is_404_and_writes_nothing(client, db, alice):
    response = await client.post("/api/posts/777/comments", json={"body": "hello"}, headers=alice.headers)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "NOT_FOUND"
    assert await db.fetchval("SELECT count(*) FROM comments") == 0


async def test_unknown_comment_is_404(client, db):
    assert (await client.get("/api/comments/5")).status == 404


async def test_comments_list_newest_first_with_page_and_cursor_modes(client, db, alice, bob):
    post = await create_post(client, alice)
    other = await create_post(client, alice)
    ids = [(await create_comment(client, bob, post["id"], f"c{i}"))["id"] for i in range(5)]
    await create_comment(client, bob, other["id"], "elsewhere")
    body = await (await client.get(f"/api/posts/{post['id']}/comments?limit=2")).json()
    assert body["data"] == [await expected_comment(db, i) for i in ids[:-3:-1]]
    assert body["meta"]["page"] == 1 and body["meta"]["limit"] == 2 and body["meta"]["total"] == 5
    seen, cursor = [c["id"] for c in body["data"]], body["meta"]["nextCursor"]
    while cursor:
        page = await (await client.get(f"/api/posts/{post['id']}/comments?limit=2&cursor={cursor}")).json()
        assert "page" not in page["meta"] and page["meta"]["total"] == 5
        seen += [c["id"] for c in page["data"]]
        cursor = page["meta"]["nextCursor"]
    assert seen == ids[::-1]
    page3 = await (await client.get(f"/api/posts/{post['id']}/comments?limit=2&page=3")).json()
    assert [c["id"] for c in page3["data"]] == [ids[0]]
    assert page3["meta"] == {"page": 3, "limit": 2, "total": 5, "nextCursor": None}
    assert (await client.get("/api/posts/999/comments")).status == 404


async def test_a_posts_cursor_is_refused_by_the_comments_list(client, db, alice):
    author_id = await insert_user(db, "w")
    for _ in range(3):
        await db.execute("INSERT INTO posts (author_id, title, body) VALUES ($1, 't', 'b')", author_id)
    cursor = (await (await client.get("/api/posts?limit=1")).json())["meta"]["nextCursor"]
    response = await client.get(f"/api/posts/1/comments?cursor={cursor}")
    assert response.status == 400
    assert (await response.json())["error"]["details"] == [{"field": "cursor", "message": "is not a valid cursor"}]


async def test_delete_comment_answers_204_and_updates_the_count(client, db, alice, bob):
    post = await create_post(client, alice)
    first = await create_comment(client, bob, post["id"], "first")
    second = await create_comment(client, bob, post["id"], "second")
    response = await client.delete(f"/api/comments/{first['id']}", headers=bob.headers)
    assert response.status == 204 and await response.read() == b""
    assert (await client.get(f"/api/comments/{first['id']}")).status == 404
    body = await (await client.get(f"/api/posts/{post['id']}")).json()
    assert body == {"data": await expected_post(db, post["id"])}
    assert body["data"]["commentCount"] == 1 and [c["id"] for c in body["data"]["comments"]] == [second["id"]]
    assert (await client.delete(f"/api/comments/{first['id']}", headers=bob.headers)).status == 404


async def test_tags_most_used_first_then_by_name_without_unused_ones(client, db, alice):
    for tags in (["b", "a"], ["a", "c"], ["a", "b"], ["zz"]):
        await create_post(client, alice, tags=tags)
    unused = await create_post(client, alice, tags=["unused"])
    await client.delete(f"/api/posts/{unused['id']}", headers=alice.headers)
    response = await client.get("/api/tags")
    assert response.status == 200
    assert await response.json() == {"data": [{"name": "a", "postCount": 3}, {"name": "b", "postCount": 2},
                                              {"name": "c", "postCount": 1}, {"name": "zz", "postCount": 1}]}
    assert await (await client.get("/api/tags?limit=2")).json() == {
        "data": [{"name": "a", "postCount": 3}, {"name": "b", "postCount": 2}]}


async def test_tags_limit_defaults_to_50_and_reaches_100(client, db):
    author_id = await insert_user(db, "w")
    await db.execute("INSERT INTO posts (author_id, title, body) VALUES ($1, 't', 'b')", author_id)
    await db.execute("INSERT INTO tags (name) SELECT 'tag-' || lpad(g::text, 3, '0') FROM generate_series(1, 120) g")
    await db.execute("INSERT INTO post_tags (post_id, tag_id) SELECT 1, id FROM tags")
    assert len((await (await client.get("/api/tags")).json())["data"]) == 50
    everything = (await (await client.get("/api/tags?limit=100")).json())["data"]
    assert [t["name"] for t in everything] == [f"tag-{i:03d}" for i in range(1, 101)]
    assert (await client.get("/api/tags?limit=101")).status == 400
