"""Every route × {anonymous, owner, another user, admin}: the status each gets, and refused writes change nothing.

The owner is alice; the resource of an `{id}` route is alice's. A test fails when the app registers a route
that is not in the matrix, so no route can ship without its guard being tested.
"""

from __future__ import annotations

import itertools

import pytest

from server.app import create_app
from tests.conftest import actor

ANON, OWNER, OTHER, ADMIN = "anonymous", "owner", "other", "admin"
WHO = (ANON, OWNER, OTHER, ADMIN)
_n = itertools.count()


def everyone(status):
    return dict.fromkeys(WHO, status)


def signed_in(status, anonymous=401):
    return {ANON: anonymous, OWNER: status, OTHER: status, ADMIN: status}


def new_user_body(_ctx):
    n = next(_n)
    return {"email": f"new{n}@example.com", "username": f"new_{n}", "password": "correct horse"}


async def fresh_refresh(ctx):
    response = await ctx["client"].post("/api/auth/login", json={"email": "alice@example.com",
                                                                 "password": "correct horse"})
    return {"refreshToken": (await response.json())["data"]["refreshToken"]}


# (method, route template, path, body or body factory, {who: status}, is_write_on_alice)
MATRIX = [
    ("GET", "/healthz", "/healthz", None, everyone(200), False),
    ("GET", "/readyz", "/readyz", None, everyone(200), False),
    ("GET", "/.well-known/jwks.json", "/.well-known/jwks.json", None, everyone(200), False),
    ("GET", "/metrics", "/metrics", None, everyone(200), False),
    ("GET", "/api/openapi.json", "/api/openapi.json", None, everyone(200), False),
    ("GET", "/api/docs", "/api/docs", None, everyone(200), False),
    ("POST", "/api/auth/login", "/api/auth/login", {"email": "alice@example.com", "password": "correct horse"},
     everyone(200), False),
    ("POST", "/api/auth/refresh", "/api/auth/refresh", fresh_refresh, everyone(200), False),
    ("POST", "/api/auth/logout", "/api/auth/logout", fresh_refresh, everyone(204), False),
    ("POST", "/api/users", "/api/users", new_user_body, everyone(201), False),
    ("GET", "/api/users", "/api/users", None, signed_in(200), False),
    ("GET", "/api/users/me", "/api/users/me", None, signed_in(200), False),
    ("GET", "/api/users/{id}", "/api/users/{alice}", None, everyone(200), False),
    ("PATCH", "/api/users/{id}", "/api/users/{alice}", {"bio": "changed"},
     {ANON: 401, OWNER: 200, OTHER: 403, ADMIN: 200}, True),
    ("DELETE", "/api/users/{id}", "/api/users/{alice}", None, {ANON: 401, OWNER: 204, OTHER: 403, ADMIN: 204}, True),
    ("GET", "/api/admin/users", "/api/admin/users", None, {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200}, False),
    ("PATCH", "/api/admin/users/{id}", "/api/admin/users/{alice}", {"role": "admin"},
     {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200}, True),
    ("GET", "/api/users/{id}/posts", "/api/users/{alice}/posts", None, everyone(200), False),
    ("GET", "/api/posts", "/api/posts", None, everyone(200), False),
    ("POST", "/api/posts", "/api/posts", {"title": "New", "body": "Text", "tags": ["x"]}, signed_in(201), False),
    ("GET", "/api/posts/{id}", "/api/posts/{post}", None, everyone(200), False),
    ("PATCH", "/api/posts/{id}", "/api/posts/{post}", {"title": "Changed"},
     {ANON: 401, OWNER: 200, OTHER: 403, ADMIN: 200}, True),
    ("DELETE", "/api/posts/{id}", "/api/posts/{post}", None, {ANON: 401, OWNER: 204, OTHER: 403, ADMIN: 204}, True),
    ("GET", "/api/posts/{id}/comments", "/api/posts/{post}/comments", None, everyone(200), False),
    ("POST", "/api/posts/{id}/comments", "/api/posts/{post}/comments", {"body": "Hi"}, signed_in(201), False),
    ("GET", "/api/comments/{id}", "/api/comments/{comment}", None, everyone(200), False),
    ("DELETE", "/api/comments/{id}", "/api/comments/{comment}", None,
     {ANON: 401, OWNER: 204, OTHER: 403, ADMIN: 204}, True),
    ("GET", "/api/tags", "/api/tags", None, everyone(200), False),
    ("GET", "/api/admin/events", "/api/admin/events", None, {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 200}, False),
    ("POST", "/api/admin/events/{id}/redeliver", "/api/admin/events/{dead_event}/redeliver", None,
     {ANON: 401, OWNER: 403, OTHER: 403, ADMIN: 202}, False),
]


@pytest.fixture
async def cast(client, db):
    alice = await actor(client, db, "alice")
    # alice's user.created event, made a dead letter for the admin to redeliver
    dead_event = await db.fetchval("SELECT id FROM outbox_events WHERE data->>'userId' = $1", str(alice.id))
    await db.execute("UPDATE outbox_deliveries SET status = 'dead' WHERE event_id = $1", dead_event)
    # alice's post, with alice's comment on it
    post = await client.post("/api/posts", json={"title": "Mine", "body": "Text", "tags": ["a"]}, headers=alice.headers)
    post_id = (await post.json())["data"]["id"]
    comment = await client.post(f"/api/posts/{post_id}/comments", json={"body": "Mine too"}, headers=alice.headers)
    return {"client": client, "db": db, OWNER: alice, OTHER: await actor(client, db, "bob"),
            ADMIN: await actor(client, db, "boss", role="admin"), "alice": alice.id, "dead_event": dead_event,
            "post": post_id, "comment": (await comment.json())["data"]["id"]}


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("method", "template", "path", "body", "expected", "write"), MATRIX,
                         ids=[f"{m[0]} {m[1]}" for m in MATRIX])
async def test_route_guard(cast, who, method, template, path, body, expected, write):
    client, db = cast["client"], cast["db"]
    headers = {} if who == ANON else cast[who].headers
    if callable(body):
        body = body(cast)
        if hasattr(body, "__await__"):
            body = await body
    before = await _snapshot(db, cast)
    url = path.format(alice=cast["alice"], dead_event=cast["dead_event"], post=cast["post"], comment=cast["comment"])
    response = await client.request(method, url, json=body, headers=headers)
    assert response.status == expected[who], await response.text()
    if response.status >= 400:
        assert (await response.json())["error"]["code"] == {401: "UNAUTHORIZED", 403: "FORBIDDEN"}[response.status]
        if write:
            assert await _snapshot(db, cast) == before
    text = await response.text()
    if who in (ANON, OTHER) and not template.startswith("/api/auth/"):  # auth answers hold the credentials' user
        assert "alice@example.com" not in text  # never another user's email


async def _snapshot(db, cast):
    """alice's row, posts, tags and comments: what a refused write must leave exactly as it was."""
    return (await db.fetchrow("SELECT * FROM users WHERE id = $1", cast["alice"]),
            await db.fetch("SELECT * FROM posts ORDER BY id"), await db.fetch("SELECT * FROM post_tags ORDER BY 1, 2"),
            await db.fetch("SELECT * FROM comments ORDER BY id"))


@pytest.mark.parametrize(("method", "path"), [("PATCH", "/api/users/999999"), ("DELETE", "/api/users/999999"),
                                              ("PATCH", "/api/admin/users/999999")])
async def test_authentication_comes_before_existence(cast, method, path):
    client = cast["client"]
    anonymous = await client.request(method, path, json={"bio": "x"} if "admin" not in path else {"role": "user"})
    assert anonymous.status == 401
    signed = await client.request(method, path, json={"bio": "x"} if "admin" not in path else {"role": "user"},
                                  headers=cast[ADMIN].headers)
    assert signed.status == 404


def test_every_registered_route_is_in_the_matrix(config):
    app = create_app(config)
    registered = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method not in ("HEAD", "*")}
    in_matrix = {(m[0], m[1]) for m in MATRIX}
    assert registered - in_matrix == set(), "routes without a guard test"
    assert in_matrix - registered == set(), "matrix rows for routes that do not exist"
