"""Login, refresh-token rotation and reuse detection, logout, sessions ending, the JWKS."""

from __future__ import annotations

import asyncio

import bcrypt
import jwt
import pytest

from server.security import PasswordPool
from tests.conftest import Actor, log_in, sign_up


async def test_login_answers_tokens_and_the_owner_view(client, db):
    user = await sign_up(client, "dora", password="correct horse")
    response = await client.post("/api/auth/login", json={"email": "DORA@example.com", "password": "correct horse"})
    assert response.status == 200
    data = (await response.json())["data"]
    assert set(data) == {"accessToken", "refreshToken", "tokenType", "expiresIn", "user"}
    assert data["tokenType"] == "Bearer" and data["expiresIn"] == 900 and data["user"] == user
    header = jwt.get_unverified_header(data["accessToken"])
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt" and header["kid"]
    claims = jwt.decode(data["accessToken"], options={"verify_signature": False})
    assert set(claims) == {"sub", "role", "iss", "aud", "iat", "exp", "jti", "sid"}
    assert claims["sub"] == str(user["id"]) and claims["role"] == "user" and claims["exp"] - claims["iat"] == 900
    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {data['accessToken']}"})
    assert (await me.json())["data"] == user
    stored = await db.fetch("SELECT token_hash FROM refresh_tokens")
    assert len(stored) == 1 and data["refreshToken"].encode() not in stored[0]["token_hash"]


@pytest.mark.parametrize("email, password", [("dora@example.com", "wrong horse"), ("nobody@example.com", "correct horse"),
                                             ("", "x")])
async def test_wrong_password_and_unknown_email_get_the_same_answer(client, db, email, password):
    await sign_up(client, "dora", password="correct horse")
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status == 401 if email else 400
    if email:
        error = (await response.json())["error"]
        assert (error["code"], error["message"]) == ("INVALID_CREDENTIALS", "Wrong email or password")


async def test_unknown_email_costs_a_password_verification_too(client, db, monkeypatch):
    """An unknown email must do the same hashing work as a wrong password, or timing reveals accounts."""
    await sign_up(client, "dora", password="correct horse")
    calls = []
    real = PasswordPool.verify

    async def counting(self, stored, password):
        calls.append(stored)
        return await real(self, stored, password)

    monkeypatch.setattr(PasswordPool, "verify", counting)
    for email in ("dora@example.com", "ghost@example.com"):
        assert (await client.post("/api/auth/login", json={"email": email, "password": "wrong horse"})).status == 401
    assert len(calls) == 2 and calls[1] is None  # None: verified against the dummy hash


async def test_disabled_account_cannot_log_in(client, db):
    user = await sign_up(client, "dora", password="correct horse")
    await db.execute("UPDATE users SET disabled_at = now() WHERE id = $1", user["id"])
    response = await client.post("/api/auth/login", json={"email": user["email"], "password": "correct horse"})
    assert response.status == 401 and (await response.json())["error"]["code"] == "INVALID_CREDENTIALS"


async def test_bcrypt_hash_from_a_loader_logs_in_and_is_rehashed_to_argon2id(client, db):
    legacy = bcrypt.hashpw(b"loader pass", bcrypt.gensalt(rounds=4)).decode()
    await db.execute("INSERT INTO users (email, username, password_hash) VALUES ('old@example.com', 'old', $1)", legacy)
    await log_in(client, "old@example.com", "loader pass")
    stored = await db.fetchval("SELECT password_hash FROM users WHERE username = 'old'")
    assert stored.startswith("$argon2id$")
    await log_in(client, "old@example.com", "loader pass")


async def test_refresh_rotates_and_the_old_token_is_spent(client, alice: Actor):
    first = await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})
    assert first.status == 200
    rotated = (await first.json())["data"]
    assert rotated["refreshToken"] != alice.refresh and rotated["user"]["id"] == alice.id
    old_sid = jwt.decode(alice.access, options={"verify_signature": False})["sid"]
    assert jwt.decode(rotated["accessToken"], options={"verify_signature": False})["sid"] == old_sid
    again = await client.post("/api/auth/refresh", json={"refreshToken": rotated["refreshToken"]})
    assert again.status == 200


async def test_reuse_of_a_spent_token_revokes_the_whole_family(client, alice: Actor):
    newest = (await (await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})).json())["data"]
    reuse = await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})
    assert reuse.status == 401 and (await reuse.json())["error"]["code"] == "INVALID_TOKEN"
    # The thief or the owner: whoever holds the newest token of the family is out too.
    newest_try = await client.post("/api/auth/refresh", json={"refreshToken": newest["refreshToken"]})
    assert newest_try.status == 401 and (await newest_try.json())["error"]["code"] == "INVALID_TOKEN"


async def test_twenty_concurrent_refreshes_of_one_token_yield_exactly_one_success(client, alice: Actor):
    responses = await asyncio.gather(*(client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})
                                       for _ in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [401] * 19
    winner = next(r for r in responses if r.status == 200)
    token = (await winner.json())["data"]["refreshToken"]
    # The losers presented a spent token: reuse, so the family (the winner's new token too) is revoked.
    assert (await client.post("/api/auth/refresh", json={"refreshToken": token})).status == 401


async def test_logout_ends_that_session_only(client, db, alice: Actor):
    other = await log_in(client, alice.user["email"], alice.password)
    response = await client.post("/api/auth/logout", json={"refreshToken": alice.refresh})
    assert response.status == 204 and await response.read() == b""
    assert (await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})).status == 401
    assert (await client.post("/api/auth/refresh", json={"refreshToken": other["refreshToken"]})).status == 200


@pytest.mark.parametrize("token", ["A" * 43, None])
async def test_logout_with_unknown_or_spent_token_is_still_204(client, alice: Actor, token):
    if token is None:
        await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})
        token = alice.refresh
    assert (await client.post("/api/auth/logout", json={"refreshToken": token})).status == 204


@pytest.mark.parametrize("path", ["/api/auth/refresh", "/api/auth/logout"])
@pytest.mark.parametrize("token", ["short", "x" * 43 + "!", "x" * 43 + "\n", "a" * 44, "", " " * 43])
async def test_refresh_token_of_the_wrong_format_is_invalid_token(client, db, path, token):
    response = await client.post(path, json={"refreshToken": token})
    assert response.status == 401 and (await response.json())["error"]["code"] == "INVALID_TOKEN"


async def test_refresh_token_presented_as_access_token_is_invalid(client, alice: Actor):
    response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {alice.refresh}"})
    assert response.status == 401 and (await response.json())["error"]["code"] == "INVALID_TOKEN"


async def test_expired_refresh_token_is_invalid(client, db, alice: Actor):
    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    response = await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})
    assert response.status == 401 and (await response.json())["error"]["code"] == "INVALID_TOKEN"


async def test_disabling_a_user_stops_their_refresh_tokens_at_once(client, alice: Actor, admin: Actor):
    second = await log_in(client, alice.user["email"], alice.password)
    response = await client.patch(f"/api/admin/users/{alice.id}", json={"disabled": True}, headers=admin.headers)
    assert response.status == 200 and (await response.json())["data"]["disabledAt"] is not None
    for token in (alice.refresh, second["refreshToken"]):
        assert (await client.post("/api/auth/refresh", json={"refreshToken": token})).status == 401
    login = await client.post("/api/auth/login", json={"email": alice.user["email"], "password": alice.password})
    assert login.status == 401
    await client.patch(f"/api/admin/users/{alice.id}", json={"disabled": False}, headers=admin.headers)
    await log_in(client, alice.user["email"], alice.password)  # enabled again: logs in
    assert (await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})).status == 401


async def test_deleting_an_account_ends_its_sessions(client, alice: Actor):
    assert (await client.delete(f"/api/users/{alice.id}", headers=alice.headers)).status == 204
    assert (await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})).status == 401
    assert (await client.get(f"/api/users/{alice.id}")).status == 404
    again = await client.post("/api/users", json={"email": alice.user["email"], "username": "fresh",
                                                  "password": "correct horse"})
    assert again.status == 409  # a deleted user's email stays taken


async def test_jwks_lists_the_signing_key(client, alice: Actor):
    response = await client.get("/.well-known/jwks.json")
    body = await response.json()
    assert set(body) == {"keys"}
    [key] = body["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"] == jwt.get_unverified_header(alice.access)["kid"]
    public = jwt.PyJWK(key).key
    claims = jwt.decode(alice.access, public, algorithms=["RS256"], audience="blog-api", issuer="blog-api")
    assert claims["sub"] == str(alice.id)


async def test_saturated_hash_pool_answers_503_fast(aiohttp_client, make_config, db):
    from server.app import create_app

    client = await aiohttp_client(create_app(make_config(hash_threads=1, hash_queue=1)))
    bodies = [{"email": f"u{i}@example.com", "username": f"user{i}", "password": "correct horse"} for i in range(12)]
    responses = await asyncio.gather(*(client.post("/api/users", json=b) for b in bodies))
    statuses = [r.status for r in responses]
    assert statuses.count(201) >= 2 and statuses.count(503) >= 1
    refused = next(r for r in responses if r.status == 503)
    assert refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "SERVICE_UNAVAILABLE"
