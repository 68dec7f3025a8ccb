"""Users: sign-up, public profile, list paging, unique values, stored password hashes."""

from __future__ import annotations

import re

import bcrypt

from server.security import verify_password
from tests.conftest import actor, sign_up

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_sign_up_answers_201_with_location_and_owner_view(client, db):
    response = await client.post("/api/users", json={
        "email": "Alice@Example.com", "username": "Alice_1", "password": "correct horse",
        "displayName": "Alice Ä", "bio": "line one\nline two"})
    assert response.status == 201
    body = await response.json()
    user = body["data"]
    assert response.headers["Location"] == f"/api/users/{user['id']}"
    assert TIMESTAMP.match(user.pop("createdAt")) and TIMESTAMP.match(user.pop("updatedAt"))
    assert body == {"data": {"id": 1, "username": "Alice_1", "displayName": "Alice Ä", "bio": "line one\nline two",
                             "email": "Alice@example.com", "role": "user", "disabledAt": None}}
    assert response.headers["Content-Type"].startswith("application/json")


async def test_stored_hash_is_argon2id_with_owasp_parameters_and_never_shown(client, db):
    me = await actor(client, db, "hashed")
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", me.id)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(stored, "correct horse") and not verify_password(stored, "wrong horse")
    for path in (f"/api/users/{me.id}", "/api/users", "/api/users/me"):
        text = await (await client.get(path, headers=me.headers)).text()
        assert "argon2" not in text and "password" not in text.lower()


async def test_bcrypt_hashes_written_by_loaders_verify():
    stored = bcrypt.hashpw(b"loader password", bcrypt.gensalt(rounds=4)).decode()
    assert verify_password(stored, "loader password")
    assert not verify_password(stored, "other password")
    assert not verify_password("not a hash", "loader password")


async def test_addresses_at_test_domains_are_accepted(client):
    assert (await sign_up(client, "tester", email="tester@example.test"))["email"] == "tester@example.test"


async def test_public_view_has_only_public_fields(client):
    user = await sign_up(client, "bob", displayName="Bob")
    response = await client.get(f"/api/users/{user['id']}")
    assert response.status == 200
    assert await response.json() == {"data": {"id": user["id"], "username": "bob", "displayName": "Bob", "bio": "",
                                              "createdAt": user["createdAt"]}}


async def test_unknown_user_is_404(client):
    response = await client.get("/api/users/999")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_email_and_username_are_unique_case_insensitively(client, db):
    await sign_up(client, "carol", email="carol@example.com")
    for body, field in ((dict(email="CAROL@example.com", username="other"), "email"),
                        (dict(email="other@example.com", username="CAROL"), "username")):
        response = await client.post("/api/users", json={**body, "password": "correct horse"})
        assert response.status == 409
        error = (await response.json())["error"]
        assert error["code"] == "CONFLICT"
        assert error["details"] == [{"field": field, "message": "is already taken"}]
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_list_pages_with_exact_total_and_next_cursor(client, alice):
    ids = [alice.id] + [(await sign_up(client, f"user{i}"))["id"] for i in range(4)]
    response = await client.get("/api/users?page=2&limit=2", headers=alice.headers)
    body = await response.json()
    assert [u["id"] for u in body["data"]] == ids[2:4]
    assert body["meta"]["page"] == 2 and body["meta"]["limit"] == 2 and body["meta"]["total"] == 5
    assert body["meta"]["nextCursor"]
    last = await (await client.get("/api/users?page=3&limit=2", headers=alice.headers)).json()
    assert [u["id"] for u in last["data"]] == ids[4:] and last["meta"]["nextCursor"] is None
    empty = await (await client.get("/api/users?page=9&limit=2", headers=alice.headers)).json()
    assert empty == {"data": [], "meta": {"page": 9, "limit": 2, "total": 5, "nextCursor": None}}


async def test_cursor_walk_visits_every_user_once(client, alice):
    ids = [alice.id] + [(await sign_up(client, f"walker{i}"))["id"] for i in range(6)]
    seen, url = [], "/api/users?limit=3"
    while url:
        body = await (await client.get(url, headers=alice.headers)).json()
        assert "page" not in body["meta"] or url == "/api/users?limit=3"
        assert body["meta"]["total"] == 7
        seen += [u["id"] for u in body["data"]]
        cursor = body["meta"]["nextCursor"]
        url = f"/api/users?limit=3&cursor={cursor}" if cursor else None
    assert seen == ids


async def test_disabled_users_are_hidden_from_public_reads(client, db, alice):
    gone = await sign_up(client, "gone")
    await db.execute("UPDATE users SET disabled_at = now() WHERE id = $1", gone["id"])
    assert (await client.get(f"/api/users/{gone['id']}")).status == 404
    body = await (await client.get("/api/users", headers=alice.headers)).json()
    assert [u["id"] for u in body["data"]] == [alice.id] and body["meta"]["total"] == 1


async def test_rows_from_outside_loaders_with_null_profile_fields_read_as_empty(client, db):
    await db.execute("INSERT INTO users (email, username, password_hash, display_name, bio) "
                     "VALUES ('l@example.com', 'loaded', 'x', NULL, NULL)")
    body = await (await client.get("/api/users/1")).json()
    assert body["data"]["displayName"] == "" and body["data"]["bio"] == ""
