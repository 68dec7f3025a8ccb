"""Users: sign-up, the public profile and the list of users."""

from __future__ import annotations

from aiohttp import web

from .. import outbox, responses
from ..db import POOL, Q, transaction
from ..errors import REQUEST_ID, NotFound
from ..inputs import Query, encode_cursor, paging, path_id, read_json
from ..passwords import hash_password
from ..schemas import SignUp


async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request, SignUp)
    password_hash = await hash_password(request, body.password)
    # The user and its user.created event commit together or not at all (the welcome email follows it).
    async with transaction(request.app[POOL]) as conn:
        row = await conn.fetchrow(Q.insert_user, body.email, body.username, password_hash, body.display_name,
                                  body.bio)
        await outbox.emit(conn, "user.created", {"userId": row["id"]}, request[REQUEST_ID])
    return responses.json({"data": responses.owner_user(row)}, status=201,
                          headers={"Location": f"/api/users/{row['id']}"})


async def get_user(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(Q.get_user_public, path_id(request))
    if row is None:
        raise NotFound("No such user")
    return responses.json({"data": responses.public_user(row)})


async def list_users(request: web.Request) -> web.Response:
    query = Query(request)
    page = paging(query, "u", (int,))
    query.check()
    pool = request.app[POOL]
    if page.after is None:
        rows = await pool.fetch(Q.list_users_page, page.limit + 1, page.offset)
    else:
        rows = await pool.fetch(Q.list_users_after, page.limit + 1, page.after[0])
    # One row more than the page tells whether a next page exists.
    items = [responses.public_user(r) for r in rows[:page.limit] if r["id"] is not None]
    next_cursor = encode_cursor("u", items[-1]["id"]) if len(rows) > page.limit else None
    return responses.json({"data": items, "meta": responses.page_meta(page, rows[0]["total"], next_cursor)})
