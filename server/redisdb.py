"""The Redis client's cleanup context (redis-py's redis.asyncio with the hiredis parser) and its breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web

from .breaker import Breaker
from .db import CONFIG
from .redisbatch import ScriptBatcher
from .resp import RespConnection

REDIS = web.AppKey("redis", redis.Redis)
REDIS_BREAKER = web.AppKey("redis_breaker", Breaker)  # every request-path use of REDIS goes through it
REDIS_SCRIPTS = web.AppKey("redis_scripts", ScriptBatcher)  # Lua calls of one loop turn share a pipeline


def create_client(url: str, max_connections: int, timeout: float = 0.5) -> redis.Redis:
    # A blocking pool waits briefly for a free connection instead of raising at once; short socket
    # timeouts keep a slow Redis from holding requests, and the breaker bounds the sum of all three.
    # Connections made from a pool retry nothing (redis-py's default there): the breaker decides.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=timeout)
    return redis.Redis(connection_pool=pool)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    client = create_client(config.redis_url, config.redis_pool_max, config.redis_timeout)
    app[REDIS] = client
    app[REDIS_BREAKER] = Breaker(timeout=config.redis_timeout, failures=config.redis_breaker_failures,
                                 reset=config.redis_breaker_reset)
    connection = RespConnection(config.redis_url) if RespConnection.supports(config.redis_url) else None
    app[REDIS_SCRIPTS] = ScriptBatcher(client, app[REDIS_BREAKER], connection)
    yield
    app[REDIS_SCRIPTS].close()
    await client.aclose()
    await client.connection_pool.disconnect()
