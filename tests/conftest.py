"""Throwaway PostgreSQL and Redis for the whole session (the embedded mode's own code), clean per test."""

from __future__ import annotations

import dataclasses
import os
import signal
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis
import uvloop

from server.app import create_app
from server.config import Config
from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.migrate import migrate
from tests.openapi_check import validate_response

TABLES = "users, posts, tags, post_tags, comments, outbox_events, outbox_deliveries, mail_sent"


@pytest.fixture(scope="session")
def tmp_root():
    # Under /tmp, not the checkout: CI's clone may sit where the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="blog-api-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_root):
    server = EmbeddedPostgres(tmp_root / "postgres", disposable=True)
    dsn = server.start()
    uvloop.run(migrate(dsn))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_root):
    server = EmbeddedRedis(tmp_root / "redis", persist=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_config(pg_server, redis_server, tmp_root) -> Config:
    # Limits raised out of the way: tests send many requests from one address; tests/test_ratelimit.py
    # sets its own.
    return Config(database_url=pg_server.dsn, redis_url=redis_server.url, pg_pool_min=1, pg_pool_max=10,
                  var_dir=str(tmp_root / "var"), rate_limit="1000000/15m", rate_limit_login="1000000/15m")


@pytest.fixture
def config(base_config) -> Config:
    return base_config


@pytest.fixture
async def db(base_config):
    """A connection to the test database, after every table was emptied and Redis flushed."""
    conn = await asyncpg.connect(base_config.database_url)
    await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    r = redis.Redis.from_url(base_config.redis_url)
    await r.flushdb()
    await r.aclose()
    yield conn
    await conn.close()


@pytest.fixture
async def client(aiohttp_client, config, db):
    """A test client whose every response is checked against the OpenAPI document (tests/openapi_check.py)."""
    return await aiohttp_client(create_app(config), middlewares=(validate_response,))


@pytest.fixture
def servers(tmp_path):
    """Redis servers of this test's own (not the session's), stopped by pid whatever happens."""
    started: list[EmbeddedRedis] = []

    def start(port: int | None = None) -> EmbeddedRedis:
        server = EmbeddedRedis(tmp_path / f"redis{len(started)}", port=port, persist=False)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)  # a frozen server must run again to hear SIGTERM
            server.stop()


@pytest.fixture
def make_config(base_config):
    def make(**changes) -> Config:
        return dataclasses.replace(base_config, **changes)
    return make


async def sign_up(client, username="alice", email=None, password="correct horse", **extra) -> dict:
    response = await client.post("/api/users", json={
        "email": email or f"{username}@example.com", "username": username, "password": password, **extra})
    assert response.status == 201, await response.text()
    return (await response.json())["data"]




@dataclasses.dataclass
class Actor:
    """A signed-in user of the tests: their user record, tokens and ready-made headers."""

    user: dict
    access: str
    refresh: str
    password: str

    @property
    def id(self) -> int:
        return self.user["id"]

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.access}"}


async def log_in(client, email: str, password: str) -> dict:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def actor(client, db, username: str, role: str = "user", password: str = "correct horse") -> Actor:
    user = await sign_up(client, username, password=password)
    if role != "user":
        await db.execute("UPDATE users SET role = $2 WHERE id = $1", user["id"], role)
    tokens = await log_in(client, user["email"], password)
    return Actor(tokens["user"], tokens["accessToken"], tokens["refreshToken"], password)


@pytest.fixture
async def alice(client, db) -> Actor:
    return await actor(client, db, "alice")


@pytest.fixture
async def bob(client, db) -> Actor:
    return await actor(client, db, "bob")


@pytest.fixture
async def admin(client, db) -> Actor:
    return await actor(client, db, "root_admin", role="admin")
