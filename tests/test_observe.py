"""Response headers of a JSON API, CORS from an allowlist, and one access log line per request."""

from __future__ import annotations

import logging

import orjson
import pytest

from server.app import create_app
from server.logs import JsonFormatter
from tests.conftest import actor
from tests.openapi_check import validate_response


async def test_every_answer_has_nosniff_and_no_server_version(client):
    for method, path in [("GET", "/healthz"), ("GET", "/api/users/1"), ("GET", "/nope"), ("DELETE", "/healthz"),
                         ("POST", "/api/users"), ("GET", "/api/docs")]:
        response = await client.request(method, path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Server"] == "blog-api", path
        assert "Access-Control-Allow-Origin" not in response.headers  # CORS is off by default


async def test_auth_answers_are_not_stored(client, db):
    alice = await actor(client, db, "alice")
    for method, path, kwargs in [("POST", "/api/auth/refresh", {"json": {"refreshToken": alice.refresh}}),
                                 ("POST", "/api/auth/login", {"json": {"email": "x@example.com", "password": "x"}}),
                                 ("GET", "/api/users/me", {"headers": alice.headers})]:
        response = await client.request(method, path, **kwargs)
        assert response.headers["Cache-Control"] == "no-store", path
    response = await client.get(f"/api/users/{alice.id}")
    assert "Cache-Control" not in response.headers


@pytest.fixture
async def cors_client(aiohttp_client, make_config, db):
    config = make_config(cors_origins="https://app.example.com, https://admin.example.com")
    return await aiohttp_client(create_app(config), middlewares=(validate_response,))


async def test_cors_for_allowed_origins_only(cors_client):
    allowed = await cors_client.get("/api/users/1", headers={"Origin": "https://app.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "X-Request-Id" in allowed.headers["Access-Control-Expose-Headers"]
    assert allowed.headers["Vary"] == "Origin"
    other = await cors_client.get("/api/users/1", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers and other.headers["Vary"] == "Origin"


async def test_cors_preflight(cors_client):
    preflight = {"Origin": "https://admin.example.com", "Access-Control-Request-Method": "PATCH",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    response = await cors_client.options("/api/users/3", headers=preflight)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://admin.example.com"
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["X-Content-Type-Options"] == "nosniff" and "X-Request-Id" in response.headers
    denied = await cors_client.options("/api/users/3", headers={**preflight, "Origin": "https://evil.example.com"})
    assert denied.status == 405 and "Access-Control-Allow-Origin" not in denied.headers
    nowhere = await cors_client.options("/api/nothing", headers=preflight)
    assert nowhere.status == 404


async def test_any_origin(aiohttp_client, make_config, db):
    client = await aiohttp_client(create_app(make_config(cors_origins="*")))
    response = await client.get("/healthz", headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_one_access_log_line_per_request(client, db, caplog):
    alice = await actor(client, db, "alice")
    caplog.set_level(logging.INFO, logger="server.access")
    caplog.clear()
    response = await client.get(f"/api/users/{alice.id}?secret=x", headers={**alice.headers, "X-Request-Id": "abc-123"})
    assert response.status == 200
    [record] = [r for r in caplog.records if r.name == "server.access"]
    line = orjson.loads(JsonFormatter().format(record))
    assert line.pop("time").endswith("Z") and line.pop("duration_ms") >= 0
    assert line == {"level": "info", "logger": "server.access", "message": line["message"], "request_id": "abc-123",
                    "method": "GET", "route": "/api/users/{id}", "path": f"/api/users/{alice.id}", "status": 200,
                    "user_id": alice.id, "client_ip": "127.0.0.1"}
    assert line["message"].startswith(f"GET /api/users/{alice.id} 200 ")
    caplog.clear()
    await client.get("/api/users/999999")
    [record] = [r for r in caplog.records if r.name == "server.access"]
    assert (record.status, record.user_id) == (404, None)


async def test_access_log_can_be_switched_off(aiohttp_client, make_config, db, caplog):
    client = await aiohttp_client(create_app(make_config(access_log=False)))
    caplog.set_level(logging.INFO, logger="server.access")
    await client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "server.access"]


async def test_access_log_shows_the_forwarded_client_behind_a_trusted_proxy(aiohttp_client, make_config, db, caplog):
    client = await aiohttp_client(create_app(make_config(trusted_proxies="127.0.0.1")))
    caplog.set_level(logging.INFO, logger="server.access")
    await client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    [record] = [r for r in caplog.records if r.name == "server.access"]
    assert record.client_ip == "203.0.113.9"
