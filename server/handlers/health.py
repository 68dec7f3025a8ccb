"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .. import responses
from ..db import POOL
from ..errors import ServiceUnavailable
from ..redisdb import REDIS

READY_TIMEOUT = 1.0  # seconds each dependency gets to answer a readiness probe


async def get_healthz(request: web.Request) -> web.Response:
    return responses.json({"status": "ok"})


async def _check(probe) -> str:
    try:
        await asyncio.wait_for(probe(), READY_TIMEOUT)
        return "ok"
    except Exception:  # noqa: BLE001 - any failure means not ready
        return "unavailable"


async def get_readyz(request: web.Request) -> web.Response:
    database, cache = await asyncio.gather(_check(lambda: request.app[POOL].fetchval("SELECT 1")),
                                           _check(request.app[REDIS].ping))
    checks = {"database": database, "redis": cache}
    if any(v != "ok" for v in checks.values()):
        error = ServiceUnavailable("Not ready: a dependency does not answer")
        error.details = [{"field": name, "message": state} for name, state in checks.items() if state != "ok"]
        raise error
    return responses.json({"status": "ok", "checks": checks})
