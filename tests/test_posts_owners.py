"""Who may write posts and comments: the ownership matrix, and refused writes leave everything as it was.

Precedence (API.md): authentication before existence. Anonymous writes are 401 whatever the id; a signed-in
caller without the right on an existing resource gets 403; a missing resource is 404.
"""

from __future__ import annotations

import pytest

from tests.conftest import actor
from tests.posts_support import create_comment, create_post

ANON, AUTHOR, OTHER, ADMIN, COMMENTER = "anonymous", "post author", "another user", "admin", "comment author"


@pytest.fixture
async def world(client, db, alice, bob, admin):
    """alice wrote a post, bob commented on it; carol is a bystander; the admin is root_admin."""
    carol = await actor(client, db, "carol")
    post = await create_post(client, alice, title="Alice's", body="original", tags=["orig"])
    comment = await create_comment(client, bob, post["id"], "bob's comment")
    callers = {ANON: {}, AUTHOR: alice.headers, COMMENTER: bob.headers, OTHER: carol.headers, ADMIN: admin.headers}
    return {"post": post, "comment": comment, "callers": callers}


async def _snapshot(client, db, world):
    """Everything a write could have changed: the API's views and the rows."""
    post_id, comment_id = world["post"]["id"], world["comment"]["id"]
    return (await (await client.get(f"/api/posts/{post_id}")).read(),
            await (await client.get(f"/api/comments/{comment_id}")).read(),
            await (await client.get("/api/posts")).read(),
            await db.fetch("SELECT * FROM posts ORDER BY id"), await db.fetch("SELECT * FROM comments ORDER BY id"),
            await db.fetch("SELECT post_id, tag_id FROM post_tags ORDER BY 1, 2"))


MATRIX = [
    # (method, path, body, caller, status, error code)
    ("PATCH", "/api/posts/{post}", {"title": "Changed"}, ANON, 401, "UNAUTHORIZED"),
    ("PATCH", "/api/posts/{post}", {"title": "Changed"}, AUTHOR, 200, None),
    ("PATCH", "/api/posts/{post}", {"title": "Changed"}, COMMENTER, 403, "FORBIDDEN"),
    ("PATCH", "/api/posts/{post}", {"title": "Changed"}, OTHER, 403, "FORBIDDEN"),
    ("PATCH", "/api/posts/{post}", {"title": "Changed"}, ADMIN, 200, None),
    ("DELETE", "/api/posts/{post}", None, ANON, 401, "UNAUTHORIZED"),
    ("DELETE", "/api/posts/{post}", None, AUTHOR, 204, None),
    ("DELETE", "/api/posts/{post}", None, COMMENTER, 403, "FORBIDDEN"),
    ("DELETE", "/api/posts/{post}", None, OTHER, 403, "FORBIDDEN"),
    ("DELETE", "/api/posts/{post}", None, ADMIN, 204, None),
    ("DELETE", "/api/comments/{comment}", None, ANON, 401, "UNAUTHORIZED"),
    ("DELETE", "/api/comments/{comment}", None, COMMENTER, 204, None),
    ("DELETE", "/api/comments/{comment}", None, AUTHOR, 204, None),  # the post's author moderates
    ("DELETE", "/api/comments/{comment}", None, OTHER, 403, "FORBIDDEN"),
    ("DELETE", "/api/comments/{comment}", None, ADMIN, 204, None),
    ("POST", "/api/posts", {"title": "t", "body": "b"}, ANON, 401, "UNAUTHORIZED"),
    ("POST", "/api/posts", {"title": "t", "body": "b"}, OTHER, 201, None),
    ("POST", "/api/posts/{post}/comments", {"body": "b"}, ANON, 401, "UNAUTHORIZED"),
    ("POST", "/api/posts/{post}/comments", {"body": "b"}, OTHER, 201, None),
    # authentication before existence
    ("PATCH", "/api/posts/999999", {"title": "x"}, ANON, 401, "UNAUTHORIZED"),
    ("DELETE", "/api/posts/999999", None, ANON, 401, "UNAUTHORIZED"),
    ("DELETE", "/api/comments/999999", None, ANON, 401, "UNAUTHORIZED"),
    ("POST", "/api/posts/999999/comments", {"body": "b"}, ANON, 401, "UNAUTHORIZED"),
    ("PATCH", "/api/posts/999999", {"title": "x"}, OTHER, 404, "NOT_FOUND"),
    ("PATCH", "/api/posts/999999", {"title": "x"}, ADMIN, 404, "NOT_FOUND"),
    ("DELETE", "/api/posts/999999", None, OTHER, 404, "NOT_FOUND"),
    ("DELETE", "/api/comments/999999", None, OTHER, 404, "NOT_FOUND"),
    ("DELETE", "/api/comments/999999", None, ADMIN, 404, "NOT_FOUND"),
    ("POST", "/api/posts/999999/comments", {"body": "b"}, OTHER, 404, "NOT_FOUND"),
]


@pytest.mark.parametrize(("method", "path", "body", "caller", "status", "code"), MATRIX,
                         ids=[f"{m} {p} as {c}" for m, p, _, c, _, _ in MATRIX])
async def test_ownership_matrix(client, db, world, method, path, body, caller, status, code):
    url = path.format(post=world["post"]["id"], comment=world["comment"]["id"])
    before = await _snapshot(client, db, world)
    kwargs = {"headers": world["callers"][caller]}
    if body is not None:
        kwargs["json"] = body
    response = await client.request(method, url, **kwargs)
    assert response.status == status, await response.text()
    if code is not None:
        assert (await response.json())["error"]["code"] == code
        assert await _snapshot(client, db, world) == before  # a refused write changed nothing
    elif status == 200:
        assert (await response.json())["data"]["title"] == "Changed"
        assert (await (await client.get(url)).json())["data"]["title"] == "Changed"
    elif status == 204:
        assert (await client.get(url)).status == 404
    else:
        assert (await client.get(response.headers["Location"])).status == 200


async def test_the_admin_sees_the_post_as_get_shows_it_after_patch(client, db, world, admin):
    post_id = world["post"]["id"]
    response = await client.patch(f"/api/posts/{post_id}", json={"tags": ["Admin-Set"]}, headers=admin.headers)
    assert response.status == 200
    assert await response.json() == await (await client.get(f"/api/posts/{post_id}")).json()
    assert (await response.json())["data"]["author"]["id"] == world["post"]["author"]["id"]  # still alice's


@pytest.mark.parametrize("path", ["/api/posts", "/api/posts/1", "/api/tags", "/api/comments/1", "/api/posts/1/comments",
                                  "/api/users/1/posts"])
async def test_an_invalid_token_is_refused_even_on_public_reads(client, db, world, path):
    response = await client.get(path, headers={"Authorization": "Bearer not.a.token"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "INVALID_TOKEN"
    assert (await client.get(path)).status == 200
