"""Admin: every user in the admin view, role changes and disabling."""

from __future__ import annotations

import re

from aiohttp import web

from .. import responses
from ..cache import invalidate
from ..db import POOL, Q, transaction
from ..errors import NotFound, ValidationError
from ..guards import caller
from ..inputs import Query, encode_cursor, paging, path_id, read_json
from ..schemas import AdminUserPatch

ROLES = ("user", "admin")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # as one-line text in schemas.py; NUL breaks SQL


def _prefix_pattern(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def list_users(request: web.Request) -> web.Response:
    query = Query(request)
    page = paging(query, "a", (int,))
    role, q = query.raw("role"), query.raw("q")
    if role is not None and role not in ROLES:
        query.fault("role", "must be user or admin")
    if q is not None and (not 1 <= len(q) <= 254 or _CONTROL.search(q)):
        query.fault("q", "must be 1-254 characters, none of them control characters")
    query.check()
    pattern = _prefix_pattern(q) if q else None
    pool = request.app[POOL]
    if page.after is None:
        rows = await pool.fetch(Q.admin_list_users_page, page.limit + 1, page.offset, role, pattern)
    else:
        rows = await pool.fetch(Q.admin_list_users_after, page.limit + 1, page.after[0], role, pattern)
    items = [responses.owner_user(r) for r in rows[:page.limit] if r["id"] is not None]
    next_cursor = encode_cursor("a", items[-1]["id"]) if len(rows) > page.limit else None
    return responses.json({"data": items, "meta": responses.page_meta(page, rows[0]["total"], next_cursor)})


async def patch_user(request: web.Request) -> web.Response:
    user_id = path_id(request)
    body = await read_json(request, AdminUserPatch)
    if user_id == caller(request).user_id:
        details = []
        if body.role == "user":
            details.append({"field": "role", "message": "an admin cannot demote themselves"})
        if body.disabled:
            details.append({"field": "disabled", "message": "an admin cannot disable themselves"})
        if details:
            raise ValidationError(details=details)
    async with transaction(request.app[POOL]) as conn:
        row = await conn.fetchrow(Q.admin_update_user, user_id, body.role, body.disabled)
        if row is None:
            raise NotFound("No such user")
        if body.disabled:
            await conn.execute(Q.revoke_user_sessions, user_id, "disabled")
    await invalidate(request, "users")
    return responses.json({"data": responses.owner_user(row)})
