"""Admin: the outbox's events, newest first, and the redelivery of dead letters."""

from __future__ import annotations

from aiohttp import web

from .. import outbox, responses
from ..db import POOL
from ..errors import Conflict, NotFound
from ..inputs import Query, decode_cursor, encode_cursor, path_id


async def list_events(request: web.Request) -> web.Response:
    query = Query(request)
    limit = query.integer("limit", 20, 1, 100)
    status = query.raw("status")
    if status is not None and status not in outbox.STATUSES:
        query.fault("status", "must be one of " + ", ".join(outbox.STATUSES))
        status = None
    cursor = query.raw("cursor")
    before = decode_cursor(query, cursor, "e", (int,)) if cursor is not None else None
    query.check()
    events, total, more = await outbox.list_events(request.app[POOL], status, limit, before[0] if before else None)
    next_cursor = encode_cursor("e", events[-1]["id"]) if more else None
    return responses.json({"data": events, "meta": {"limit": limit, "total": total, "nextCursor": next_cursor}})


async def redeliver_event(request: web.Request) -> web.Response:
    event_id = path_id(request)
    pool = request.app[POOL]
    result = await outbox.redeliver(pool, event_id)
    if result == "missing":
        raise NotFound("No such event")
    if result == "not_dead":
        raise Conflict("Only a dead event can be redelivered")
    return responses.json({"data": await outbox.get_event(pool, event_id)}, status=202)
