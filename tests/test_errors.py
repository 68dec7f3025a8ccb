"""The envelope: request ids, aiohttp's own errors, unexpected exceptions, database failures."""

from __future__ import annotations

import logging
import re

import asyncpg
import pytest
from aiohttp import web

from server.app import create_app
from server.errors import ServiceUnavailable, from_exception
from server.routes import add_route
from tests.posts_support import create_post


async def test_request_id_is_echoed_when_safe(client):
    response = await client.get("/healthz", headers={"X-Request-Id": "abc-123.DEF_4"})
    assert response.headers["X-Request-Id"] == "abc-123.DEF_4"


@pytest.mark.parametrize("given", ["has space", "x" * 129, "semi;colon", "ünï", ""])
async def test_unsafe_request_id_is_replaced(client, given):
    response = await client.get("/api/users/404", headers={"X-Request-Id": given})
    made = response.headers["X-Request-Id"]
    assert made != given and len(made) == 32
    assert (await response.json())["error"]["requestId"] == made


async def test_unknown_route_is_404_in_the_envelope(client):
    response = await client.get("/nope")
    assert response.status == 404
    assert await response.json() == {"error": {"code": "NOT_FOUND", "message": "No such route",
                                               "requestId": response.headers["X-Request-Id"]}}


async def test_wrong_method_is_405_with_allow(client):
    response = await client.put("/api/users")
    assert response.status == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert (await response.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("path", ["/api/%0A", "/%0D%0Ax", "/api/posts/0", "/api/posts/1/", "//", "/", "/api/tags%00"])
async def test_every_path_without_a_route_gets_the_envelope(client, path):
    """Routing's own answers are plain text; no path, control characters included, reaches them."""
    response = await client.get(path)
    assert response.status == 404 and response.content_type == "application/json"
    assert (await response.json())["error"]["code"] == "NOT_FOUND"
    assert response.headers["Server"] == "blog-api" and len(response.headers["X-Request-Id"]) == 32


async def test_methods_a_path_lacks_get_405_in_the_envelope_head_and_options_included(client):
    head = await client.head("/api/auth/login")  # HEAD is answered only where GET is
    assert head.status == 405 and head.headers["Allow"] == "POST" and "X-Request-Id" in head.headers
    assert set((await client.put("/api/tags")).headers["Allow"].split(", ")) == {"GET", "HEAD"}
    options = await client.options("/api/posts/1")  # not a CORS preflight
    assert options.status == 405 and set(options.headers["Allow"].split(", ")) == {"DELETE", "GET", "HEAD", "PATCH"}
    assert (await options.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_head_answers_as_get_would_without_the_body(client, alice):
    """RFC 9110 9.3.2: the status and header fields of the GET (ETag, length, RateLimit) and no body; the
    keep-alive connection goes on; the request counts against the budget and in metrics like any other."""
    post = await create_post(client, alice)
    get = await client.get(f"/api/posts/{post['id']}")
    body = await get.read()
    head = await client.head(f"/api/posts/{post['id']}")
    assert head.status == 200 and await head.read() == b""
    assert head.headers["ETag"] == get.headers["ETag"] and int(head.headers["Content-Length"]) == len(body)
    assert head.headers["Content-Type"].startswith("application/json")
    assert remaining(head) == remaining(get) - 1
    fresh = await client.head(f"/api/posts/{post['id']}", headers={"If-None-Match": get.headers["ETag"]})
    assert fresh.status == 304 and fresh.headers["ETag"] == get.headers["ETag"]
    anonymous = await client.head("/api/users")  # the guard still applies
    assert anonymous.status == 401 and await anonymous.read() == b"" and "X-Request-Id" in anonymous.headers
    assert (await client.head("/healthz")).status == 200
    assert await (await client.get(f"/api/posts/{post['id']}")).read() == body  # same connection, in step
    metrics = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="HEAD",route="/api/posts/{id}",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="HEAD",route="/api/posts/{id}",status="304"} 1.0' in metrics


async def test_expect_100_continue_through_the_test_server(client, alice):
    """aiohttp's own server (this client's) gets `100 Continue` at once, as aiohttp sends it; a live
    `serve` sends it only when the body is read (tests/test_shutdown.py). Other expectations are ignored."""
    created = await client.post("/api/posts", json={"title": "t", "body": "b"}, headers=alice.headers, expect100=True)
    assert created.status == 201
    odd = await client.post("/api/posts", json={"title": "t", "body": "b"},
                            headers={**alice.headers, "Expect": "something-else"})
    assert odd.status == 201  # not aiohttp's 417 outside the request path


def remaining(response) -> int:
    return int(re.search(r";r=(\d+)", response.headers["RateLimit"]).group(1))


async def test_unexpected_exception_is_a_bare_500_with_a_logged_traceback(aiohttp_client, config, db, caplog):
    async def boom(request):
        raise RuntimeError("secret internal detail from SELECT * FROM users")

    app = create_app(config)
    add_route(app, "GET", "/boom", boom)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="server.errors"):
        response = await client.get("/boom", headers={"X-Request-Id": "trace-me"})
    assert response.status == 500
    assert await response.json() == {"error": {"code": "INTERNAL_ERROR", "message": "An unexpected error occurred",
                                               "requestId": "trace-me"}}
    [record] = [r for r in caplog.records if r.name == "server.errors"]
    assert record.exc_info and "secret internal detail" in str(record.exc_info[1])
    assert record.request_id == "trace-me"


async def test_healthz_and_readyz(client):
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_readyz_is_503_when_redis_does_not_answer(aiohttp_client, make_config, db):
    from server.embedded import free_port

    client = await aiohttp_client(create_app(make_config(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    error = (await response.json())["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE" and error["details"] == [{"field": "redis", "message": "unavailable"}]


@pytest.mark.parametrize("exc", [asyncpg.CannotConnectNowError("starting"), ConnectionRefusedError(),
                                 asyncpg.ConnectionDoesNotExistError("gone"), TimeoutError()])
def test_database_outages_map_to_503_with_retry_after(exc):
    error = from_exception(exc)
    assert isinstance(error, ServiceUnavailable) and error.headers == {"Retry-After": "1"}


def test_aiohttp_errors_map_to_contract_codes():
    assert from_exception(web.HTTPRequestEntityTooLarge(1, 2)).code == "PAYLOAD_TOO_LARGE"
    assert from_exception(web.HTTPNotFound()).code == "NOT_FOUND"
    assert from_exception(web.HTTPUnsupportedMediaType()).code == "UNSUPPORTED_MEDIA_TYPE"
    assert from_exception(ValueError("x")).code == "INTERNAL_ERROR"
