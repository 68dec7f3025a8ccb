"""Tags: the most used first."""

from __future__ import annotations

from aiohttp import web

from .. import responses
from ..db import POOL, Q
from ..inputs import Query


async def list_tags(request: web.Request) -> web.Response:
    """`{data: [{name, postCount}]}` (no meta): at most `?limit` (1-100, default 50), unused tags left out."""
    query = Query(request)
    limit = query.integer("limit", 50, 1, 100)
    query.check()
    return responses.data_text(await request.app[POOL].fetchval(Q.list_tags, limit))
