"""Bounded work: requests in flight, request deadline, pool wait, statement timeout, lost connections."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from server.app import create_app
from server.db import POOL, Q
from server.routes import add_route
from tests.conftest import sign_up


def _app_with_slow_route(config, seconds: float):
    async def slow(request):
        await asyncio.sleep(seconds)
        return web.json_response({"slept": seconds})

    app = create_app(config)
    add_route(app, "GET", "/slow", slow)
    return app


async def test_requests_past_the_in_flight_bound_get_an_immediate_503(aiohttp_client, make_config, db):
    client = await aiohttp_client(_app_with_slow_route(make_config(max_in_flight=2), 0.5))
    slow = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    refused = await client.get("/healthz")
    assert time.monotonic() - started < 0.2
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert [r.status for r in await asyncio.gather(*slow)] == [200, 200]
    assert (await client.get("/healthz")).status == 200  # the bound frees up again


async def test_a_request_past_its_deadline_is_answered_503(aiohttp_client, make_config, db):
    client = await aiohttp_client(_app_with_slow_route(make_config(request_timeout=0.2), 5))
    started = time.monotonic()
    response = await client.get("/slow")
    assert response.status == 503 and time.monotonic() - started < 1


async def test_waiting_for_a_pool_connection_is_bounded(aiohttp_client, make_config, db):
    client = await aiohttp_client(create_app(make_config(pg_pool_min=1, pg_pool_max=1, pg_acquire_timeout=0.2)))
    pool = client.server.app[POOL]
    async with pool.acquire():  # the only connection is busy
        started = time.monotonic()
        response = await client.get("/api/users/1")
        assert response.status == 503 and time.monotonic() - started < 1
        assert response.headers["Retry-After"] == "1"
    assert (await client.get("/api/users/1")).status == 404  # served again once a connection is free


async def test_statement_timeout_is_a_503_not_a_500(aiohttp_client, make_config, db):
    async def long_query(request):
        await request.app[POOL].fetchval("SELECT pg_sleep(2)")
        return web.json_response({})

    app = create_app(make_config(pg_statement_timeout=0.1))
    add_route(app, "GET", "/long", long_query)
    client = await aiohttp_client(app)
    response = await client.get("/long")
    assert response.status == 503


async def test_reads_survive_connections_killed_under_the_pool(client, db):
    user = await sign_up(client, "survivor")
    for _ in range(3):  # warm several connections into the pool
        assert (await client.get(f"/api/users/{user['id']}")).status == 200
    # The pool's connections are the ones whose last statement was the profile read.
    killed = await db.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE pid <> pg_backend_pid() AND query = $1", Q.get_user_public)
    assert killed >= 1
    for _ in range(3):
        response = await client.get(f"/api/users/{user['id']}")
        assert response.status == 200, await response.text()
