"""Changing and deleting users, the admin surface, and the create-admin command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import log_in, sign_up

ROOT = Path(__file__).resolve().parent.parent


async def test_owner_changes_display_name_and_bio(client, alice):
    response = await client.patch(f"/api/users/{alice.id}", json={"displayName": "Alice A.", "bio": "hi"},
                                  headers=alice.headers)
    assert response.status == 200
    data = (await response.json())["data"]
    assert (data["displayName"], data["bio"], data["email"]) == ("Alice A.", "hi", "alice@example.com")
    assert data["updatedAt"] > alice.user["updatedAt"]
    assert (await (await client.get(f"/api/users/{alice.id}")).json())["data"]["displayName"] == "Alice A."


async def test_an_empty_patch_changes_nothing_updated_at_included(client, alice, admin):
    """As for posts: `{}` is answered with the resource as it was, on the owner's route and the admin's."""
    before = (await (await client.get(f"/api/users/{alice.id}", headers=alice.headers)).json())["data"]
    own = await client.patch(f"/api/users/{alice.id}", json={}, headers=alice.headers)
    assert own.status == 200 and (await own.json())["data"] == before
    by_admin = await client.patch(f"/api/admin/users/{alice.id}", json={}, headers=admin.headers)
    assert by_admin.status == 200 and (await by_admin.json())["data"] == before
    after = (await (await client.get(f"/api/users/{alice.id}", headers=alice.headers)).json())["data"]
    assert after == before


@pytest.mark.parametrize("field, value", [("role", "admin"), ("id", 99), ("email", "x@example.com"),
                                          ("createdAt", "2020-01-01T00:00:00Z"), ("disabledAt", None),
                                          ("username", "renamed"), ("passwordHash", "$argon2id$x")])
async def test_mass_assignment_is_refused_and_nothing_applied(client, db, alice, field, value):
    before = await db.fetchrow("SELECT * FROM users WHERE id = $1", alice.id)
    response = await client.patch(f"/api/users/{alice.id}", json={"bio": "sneaky", field: value},
                                  headers=alice.headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"] == [{"field": field,
                                                                          "message": "is not an allowed field"}]
    assert await db.fetchrow("SELECT * FROM users WHERE id = $1", alice.id) == before


@pytest.mark.parametrize("body, field", [({"displayName": None}, "displayName"), ({"bio": 5}, "bio"),
                                         ({"password": "new password"}, "currentPassword"),
                                         ({"currentPassword": "correct horse"}, "password"),
                                         ({"currentPassword": "correct horse", "password": "short"}, "password")])
async def test_bad_patches_are_validation_errors(client, alice, body, field):
    response = await client.patch(f"/api/users/{alice.id}", json=body, headers=alice.headers)
    assert response.status == 400
    assert [d["field"] for d in (await response.json())["error"]["details"]] == [field]


async def test_wrong_current_password_is_a_validation_error(client, db, alice):
    before = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", alice.id)
    response = await client.patch(f"/api/users/{alice.id}", json={"currentPassword": "wrong horse",
                                                                  "password": "new password"}, headers=alice.headers)
    assert response.status == 400
    assert (await response.json())["error"]["details"] == [{"field": "currentPassword",
                                                             "message": "is not the current password"}]
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", alice.id) == before


async def test_password_change_ends_every_other_session(client, alice):
    other = await log_in(client, "alice@example.com", "correct horse")
    response = await client.patch(f"/api/users/{alice.id}", json={"currentPassword": "correct horse",
                                                                  "password": "new password"}, headers=alice.headers)
    assert response.status == 200
    assert (await client.post("/api/auth/refresh", json={"refreshToken": other["refreshToken"]})).status == 401
    assert (await client.post("/api/auth/refresh", json={"refreshToken": alice.refresh})).status == 200
    await log_in(client, "alice@example.com", "new password")
    assert (await client.post("/api/auth/login", json={"email": "alice@example.com",
                                                       "password": "correct horse"})).status == 401


async def test_owner_view_for_self_and_admin_public_view_for_others(client, alice, bob, admin):
    for who, has_email in ((alice, True), (admin, True), (bob, False), (None, False)):
        response = await client.get(f"/api/users/{alice.id}", headers=who.headers if who else {})
        assert ("email" in (await response.json())["data"]) is has_email


async def test_admin_cannot_demote_disable_or_delete_themselves(client, db, admin):
    response = await client.patch(f"/api/admin/users/{admin.id}", json={"role": "user", "disabled": True},
                                  headers=admin.headers)
    assert response.status == 400
    assert {d["field"] for d in (await response.json())["error"]["details"]} == {"role", "disabled"}
    assert (await client.delete(f"/api/users/{admin.id}", headers=admin.headers)).status == 400
    row = await db.fetchrow("SELECT role, disabled_at FROM users WHERE id = $1", admin.id)
    assert (row["role"], row["disabled_at"]) == ("admin", None)


async def test_admin_promotes_and_the_new_role_shows_in_new_tokens(client, alice, admin):
    response = await client.patch(f"/api/admin/users/{alice.id}", json={"role": "admin"}, headers=admin.headers)
    assert (await response.json())["data"]["role"] == "admin"
    promoted = await log_in(client, "alice@example.com", "correct horse")
    listing = await client.get("/api/admin/users", headers={"Authorization": f"Bearer {promoted['accessToken']}"})
    assert listing.status == 200


@pytest.mark.parametrize("body", [{"role": "root"}, {"disabled": "yes"}, {"role": None}, {"email": "x@example.com"}])
async def test_admin_patch_validates(client, alice, admin, body):
    response = await client.patch(f"/api/admin/users/{alice.id}", json=body, headers=admin.headers)
    assert response.status == 400 and (await response.json())["error"]["code"] == "VALIDATION_ERROR"


async def test_admin_list_filters_by_role_and_prefix(client, db, alice, bob, admin):
    await sign_up(client, "Alicia")
    await sign_up(client, "percent", email="al%x@example.com")

    async def ids(query):
        response = await client.get(f"/api/admin/users?{query}", headers=admin.headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["meta"]["total"] == len(body["data"])
        return [u["username"] for u in body["data"]]

    assert await ids("q=ALI") == ["alice", "Alicia"]
    assert await ids("q=al%25") == ["percent"]  # LIKE wildcards are literal
    assert await ids("role=admin") == ["root_admin"]
    assert await ids("role=user&q=bob") == ["bob"]
    assert await ids("q=bob%40example") == ["bob"]
    response = await client.get("/api/admin/users?role=owner", headers=admin.headers)
    assert response.status == 400 and (await response.json())["error"]["details"][0]["field"] == "role"
    listing = await (await client.get("/api/admin/users?limit=2", headers=admin.headers)).json()
    assert "email" in listing["data"][0] and listing["meta"]["total"] == 5 and listing["meta"]["nextCursor"]


async def test_admin_sees_deleted_users_and_can_enable_them(client, alice, admin):
    await client.delete(f"/api/users/{alice.id}", headers=alice.headers)
    view = await client.get(f"/api/users/{alice.id}", headers=admin.headers)
    assert view.status == 200 and (await view.json())["data"]["disabledAt"] is not None
    await client.patch(f"/api/admin/users/{alice.id}", json={"disabled": False}, headers=admin.headers)
    assert (await client.get(f"/api/users/{alice.id}")).status == 200


def test_create_admin_command(base_config, tmp_path):
    env = {**os.environ, "DATABASE_URL": base_config.database_url, "REDIS_URL": base_config.redis_url,
           "ADMIN_PASSWORD": "admin password", "VAR_DIR": str(tmp_path)}
    args = [sys.executable, "-m", "server", "create-admin", "--email", "first@example.com", "--username", "first"]
    made = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "admin first created" in made.stdout and "admin password" not in made.stdout + made.stderr
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already taken" in again.stderr
    weak = subprocess.run(args[:-4] + ["--email", "w@example.com", "--username", "weak"], cwd=ROOT,
                          env={**env, "ADMIN_PASSWORD": "short"}, capture_output=True, text=True, timeout=60)
    assert weak.returncode == 1 and "password" in weak.stderr


async def test_created_admin_can_log_in_and_use_the_admin_surface(client, base_config):
    from server.admin_cli import create_admin

    await create_admin(base_config.database_url, "chief@example.com", "chief", "admin password")
    tokens = await log_in(client, "chief@example.com", "admin password")
    assert tokens["user"]["role"] == "admin"
    response = await client.get("/api/admin/users", headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert response.status == 200
