"""Users: sign-up, profiles, the list of users, profile changes and soft deletion."""

from __future__ import annotations

from aiohttp import web

from .. import outbox, responses
from ..cache import invalidate
from ..db import POOL, Q, transaction
from ..errors import REQUEST_ID, NotFound, ValidationError
from ..guards import caller, is_self_or_admin, require_owner_or_admin
from ..inputs import Query, encode_cursor, paging, path_id, read_json
from ..passwords import hash_password, verify_password
from ..schemas import SignUp, UserPatch


async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request, SignUp)
    password_hash = await hash_password(request, body.password)
    # The user and its user.created event commit together or not at all (the welcome email follows it).
    async with transaction(request.app[POOL]) as conn:
        row = await conn.fetchrow(Q.insert_user, body.email, body.username, password_hash, body.display_name,
                                  body.bio)
        await outbox.emit(conn, "user.created", {"userId": row["id"]}, request[REQUEST_ID])
    outbox.wake(request.app[POOL])
    return responses.json({"data": responses.owner_user(row)}, status=201,
                          headers={"Location": f"/api/users/{row['id']}"})


async def get_user(request: web.Request) -> web.Response:
    """The public view; the owner view for the user themselves or an admin."""
    user_id = path_id(request)
    if is_self_or_admin(request, user_id):
        row = await request.app[POOL].fetchrow(Q.user_by_id, user_id)
        if row is not None and (row["disabled_at"] is None or caller(request).role == "admin"):
            return responses.json({"data": responses.owner_user(row)})
        raise NotFound("No such user")
    row = await request.app[POOL].fetchrow(Q.get_user_public, user_id)
    if row is None:
        raise NotFound("No such user")
    return responses.json({"data": responses.public_user(row)})


async def get_me(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(Q.user_by_id, caller(request).user_id)
    if row is None or row["disabled_at"] is not None:
        raise NotFound("No such user")
    return responses.json({"data": responses.owner_user(row)})


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


async def _live_user_for(request: web.Request, user_id: int):
    """The user to change: 404 when missing or deleted (unless an admin asks), 403 when not the caller's."""
    row = await request.app[POOL].fetchrow(Q.user_by_id, user_id)
    if row is None or (row["disabled_at"] is not None and caller(request).role != "admin"):
        raise NotFound("No such user")
    return require_owner_or_admin(request, user_id)


async def patch_user(request: web.Request) -> web.Response:
    user_id = path_id(request)
    principal = await _live_user_for(request, user_id)
    body = await read_json(request, UserPatch)
    new_hash = None
    if body.password is not None or body.current_password is not None:
        if body.current_password is None:
            raise ValidationError.field("currentPassword", "is required to change the password")
        if body.password is None:
            raise ValidationError.field("password", "is required with currentPassword")
        stored = await request.app[POOL].fetchval(Q.password_hash_of, user_id)
        if not await verify_password(request, stored, body.current_password):
            raise ValidationError.field("currentPassword", "is not the current password")
        new_hash = await hash_password(request, body.password)
    async with transaction(request.app[POOL]) as conn:
        row = await conn.fetchrow(Q.update_user, user_id, body.display_name, body.bio, new_hash)
        if new_hash is not None:  # a new password ends every other session of the user
            await conn.execute(Q.revoke_other_sessions, user_id, principal.session_id)
    await invalidate(request, "users")
    return responses.json({"data": responses.owner_user(row)})


async def delete_user(request: web.Request) -> web.Response:
    """Soft delete: the account is disabled and its sessions end; posts and comments stay."""
    user_id = path_id(request)
    principal = await _live_user_for(request, user_id)
    if principal.user_id == user_id and principal.role == "admin":
        raise ValidationError.field("id", "an admin cannot delete their own account")
    async with transaction(request.app[POOL]) as conn:
        if await conn.fetchval(Q.disable_user, user_id) is None:
            raise NotFound("No such user")
        await conn.execute(Q.revoke_user_sessions, user_id, "deleted")
    await invalidate(request, "users")
    return web.Response(status=204)
