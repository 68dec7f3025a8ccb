"""The Redis client's cleanup context (redis-py's redis.asyncio with the hiredis parser)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web

from .db import CONFIG

REDIS = web.AppKey("redis", redis.Redis)


def create_client(url: str, max_connections: int) -> redis.Redis:
    # A blocking pool waits briefly for a free connection instead of raising at once; short socket
    # timeouts keep a slow Redis from holding requests (the breaker in later layers builds on them).
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=0.5, socket_timeout=0.5, socket_connect_timeout=0.5)
    return redis.Redis(connection_pool=pool)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    client = create_client(config.redis_url, config.redis_pool_max)
    app[REDIS] = client
    yield
    await client.aclose()
    await client.connection_pool.disconnect()
