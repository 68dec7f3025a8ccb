"""The OpenAPI document: valid 3.1, in step with the router, served as written, and enforced on responses."""

from __future__ import annotations

import re

import orjson
import pytest
from openapi_spec_validator import validate

from server import openapi
from server.app import create_app
from tests.conftest import actor
from tests.openapi_check import problems
from tests.openapi_pending import PENDING


def test_the_document_is_valid_openapi_3_1():
    document = openapi.load()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert "x-anchors" not in document


def _registered(app) -> set[tuple[str, str]]:
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.method not in ("HEAD", "*")}


def test_router_and_document_agree(config):
    """Scenario: a route is added without documenting it, or the document names a route that is not served.

    Operations of other branches that have not landed yet are listed in tests/openapi_pending.py.
    """
    registered, documented = _registered(create_app(config)), openapi.operations()
    assert not registered - documented, f"registered but missing from the document: {sorted(registered - documented)}"
    unknown = documented - registered - PENDING
    assert not unknown, f"in the document but neither registered nor pending: {sorted(unknown)}"
    landed = PENDING & registered
    assert not landed, f"registered now: delete from tests/openapi_pending.py: {sorted(landed)}"
    assert not PENDING - documented, f"pending but not in the document: {sorted(PENDING - documented)}"


def test_every_operation_has_an_id_security_and_its_errors():
    ids = set()
    for path, item in openapi.document()["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            ids.add(op["operationId"])
            assert "security" in op, (method, path)
            assert {"500", "503"} <= set(op["responses"]), (method, path)  # any route, when overloaded
            if path.startswith("/api/"):
                assert {"429", "503"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(op["responses"]), (method, path)
            if "{id}" in path:
                assert "404" in op["responses"], (method, path)
            if op["security"] == [{"bearerAuth": []}]:
                assert "401" in op["responses"], (method, path)
    assert len(ids) == len(openapi.operations())


async def test_served_document_is_the_file(client):
    response = await client.get("/api/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert orjson.loads(await response.read()) == openapi.load()


async def test_docs_page_is_self_contained(client):
    response = await client.get("/api/docs", headers={"Accept-Encoding": "identity"})
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert "SwaggerUIBundle" in page and '"/api/openapi.json"' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", page)
    zipped = await client.get("/api/docs", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and await zipped.text() == page


@pytest.mark.parametrize("status, headers, body, fault", [
    (200, {"X-Request-Id": "a", "Content-Type": "application/json"},
     b'{"data": {"id": 1, "username": "a", "displayName": "", "bio": "", "createdAt": "2024-01-01T00:00:00Z",'
     b' "email": "a@example.com"}}', "body ['data']"),
    (200, {"Content-Type": "application/json"},
     b'{"data": {"id": 1, "username": "a", "displayName": "", "bio": "", "createdAt": "2024-01-01T00:00:00Z"}}',
     "header X-Request-Id is required"),
    (418, {"X-Request-Id": "a"}, b"", "status 418 is not documented"),
    (404, {"X-Request-Id": "a", "Content-Type": "application/json"},
     b'{"error": {"code": "CONFLICT", "message": "x", "requestId": "a"}}', "body ['error']['code']"),
    (200, {"X-Request-Id": "a", "Content-Type": "text/html"}, b"<p>", "Content-Type 'text/html'"),
])
def test_the_checker_finds_faults(status, headers, body, fault):
    """The response checker can fail: a public user leaking an email, a missing header, an unknown status..."""
    found = problems("GET", "/api/users/7", status, headers, body)
    assert any(fault in f for f in found), found


async def test_responses_of_the_existing_routes_conform(client, db):
    """Every call below goes through the checking client; this walks each documented status we can cause."""
    alice = await actor(client, db, "alice")
    admin = await actor(client, db, "root_admin", role="admin")
    calls = [
        ("GET", "/healthz", {}, None, 200), ("GET", "/readyz", {}, None, 200), ("GET", "/metrics", {}, None, 200),
        ("POST", "/api/users", {}, {"email": "b@example.com", "username": "bob", "password": "long enough"}, 201),
        ("POST", "/api/users", {}, {"email": "b@example.com", "username": "bob2", "password": "long enough"}, 409),
        ("POST", "/api/users", {}, {"email": "nope"}, 400),
        ("POST", "/api/users", {"Content-Type": "text/plain"}, "x", 415),
        ("GET", "/api/users", alice.headers, None, 200), ("GET", "/api/users?limit=0", alice.headers, None, 400),
        ("GET", "/api/users", {}, None, 401), ("GET", "/api/users", {"Authorization": "Bearer x.y.z"}, None, 401),
        ("GET", "/api/users/me", alice.headers, None, 200), ("GET", f"/api/users/{alice.id}", {}, None, 200),
        ("GET", f"/api/users/{alice.id}", alice.headers, None, 200), ("GET", "/api/users/999", {}, None, 404),
        ("PATCH", f"/api/users/{alice.id}", alice.headers, {"bio": "hi"}, 200),
        ("PATCH", f"/api/users/{admin.id}", alice.headers, {"bio": "hi"}, 403),
        ("GET", "/api/admin/users", admin.headers, None, 200), ("GET", "/api/admin/users", alice.headers, None, 403),
        ("PATCH", f"/api/admin/users/{alice.id}", admin.headers, {"role": "admin"}, 200),
        ("POST", "/api/auth/login", {}, {"email": "b@example.com", "password": "wrong password"}, 401),
        ("POST", "/api/auth/refresh", {}, {"refreshToken": alice.refresh}, 200),
        ("POST", "/api/auth/logout", {}, {"refreshToken": alice.refresh}, 204),
        ("GET", "/.well-known/jwks.json", {}, None, 200),
        ("DELETE", f"/api/users/{alice.id}", alice.headers, None, 204),
    ]
    for method, path, headers, body, status in calls:
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body} if body else {}
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status == status, (method, path, await response.text())
