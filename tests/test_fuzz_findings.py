"""Bugs that schemathesis found in the service, pinned so they stay fixed."""

from __future__ import annotations

from tests.conftest import actor


async def test_login_with_a_nul_in_the_email_is_a_validation_error(client):
    """Scenario: `{"email": "üD\\u0000b", ...}` reached PostgreSQL, whose text cannot hold NUL: a 500."""
    response = await client.post("/api/auth/login", json={"email": "\u00fcD\u0000b", "password": "whatever1"})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"] == [{"field": "email", "message": "must not contain control characters"}]


async def test_admin_search_with_a_nul_is_a_validation_error(client, db):
    """Scenario: `?q=%00` went into the LIKE pattern of the admin list: a 500 for the same reason."""
    admin = await actor(client, db, "root_admin", role="admin")
    response = await client.get("/api/admin/users?q=a%00b", headers=admin.headers)
    assert response.status == 400
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["q"]
