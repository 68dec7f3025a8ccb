"""The app's password pool: hashing and verification off the event loop, 503 when saturated."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .db import CONFIG
from .errors import ServiceUnavailable
from .security import HashQueueFull, PasswordPool

PASSWORDS = web.AppKey("passwords", PasswordPool)


async def passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[PASSWORDS] = PasswordPool(config.hash_threads, config.hash_queue)
    yield
    app[PASSWORDS].close()


async def hash_password(request: web.Request, password: str) -> str:
    try:
        return await request.app[PASSWORDS].hash(password)
    except HashQueueFull:
        raise ServiceUnavailable("Too many password operations in progress") from None


async def verify_password(request: web.Request, stored: str | None, password: str) -> bool:
    """Checks against a dummy hash when `stored` is None, so unknown accounts cost the same time."""
    try:
        return await request.app[PASSWORDS].verify(stored, password)
    except HashQueueFull:
        raise ServiceUnavailable("Too many password operations in progress") from None
