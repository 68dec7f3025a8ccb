"""Auth: login, refresh-token rotation with reuse detection, logout, and the JWKS."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from .. import responses
from ..db import CONFIG, POOL, Q, transaction
from ..errors import InvalidCredentials, InvalidToken
from ..guards import KEYS
from ..inputs import read_json
from ..passwords import hash_password, verify_password
from ..schemas import Login, RefreshToken
from ..security import needs_rehash
from ..tokens import issue_access_token, new_refresh_token, refresh_token_hash

log = logging.getLogger("server.auth")


async def _issue(request: web.Request, conn: asyncpg.Connection, user, session_id: int) -> web.Response:
    """A new refresh token in `session_id` (inside the caller's transaction) and an access token."""
    config = request.app[CONFIG]
    refresh = new_refresh_token()
    await conn.execute(Q.insert_refresh_token, refresh_token_hash(refresh), session_id, config.refresh_token_ttl)
    access = issue_access_token(request.app[KEYS], user_id=user["id"], role=user["role"], session_id=session_id,
                                issuer=config.jwt_issuer, audience=config.jwt_audience, ttl=config.access_token_ttl)
    return responses.json({"data": {"accessToken": access, "refreshToken": refresh, "tokenType": "Bearer",
                                    "expiresIn": config.access_token_ttl, "user": responses.owner_user(user)}})


async def login(request: web.Request) -> web.Response:
    body = await read_json(request, Login)
    pool = request.app[POOL]
    user = await pool.fetchrow(Q.user_for_login, body.email)
    # An unknown email is verified against a dummy hash: the same answer after the same work.
    stored = user["password_hash"] if user is not None else None
    if not await verify_password(request, stored, body.password) or user["disabled_at"] is not None:
        raise InvalidCredentials()
    if needs_rehash(stored):  # bcrypt from a loader, or older argon2 parameters
        await pool.execute(Q.update_password_hash, user["id"], await hash_password(request, body.password))
    async with transaction(pool) as conn:
        session_id = await conn.fetchval(Q.insert_session, user["id"])
        return await _issue(request, conn, user, session_id)


async def refresh(request: web.Request) -> web.Response:
    body = await read_json(request, RefreshToken)
    token_hash = refresh_token_hash(body.refresh_token)
    if token_hash is None:
        raise InvalidToken("The refresh token is invalid")
    async with transaction(request.app[POOL]) as conn:
        token = await conn.fetchrow(Q.lock_refresh_token, token_hash)
        if token is not None and token["used_at"] is None and not (
                token["revoked_at"] or token["expired"] or token["disabled_at"]):
            await conn.execute(Q.spend_refresh_token, token_hash)
            user = await conn.fetchrow(Q.user_by_id, token["user_id"])
            return await _issue(request, conn, user, token["session_id"])
        reused = token is not None and token["used_at"] is not None
        if reused:
            # Someone holds a copy of a spent token. End the whole family, newest token included; the
            # revocation commits with this transaction before the 401 goes out.
            await conn.execute(Q.revoke_session, token["session_id"], "reuse")
            log.warning("refresh token reuse: session %d revoked", token["session_id"])
    raise InvalidToken("The refresh token was reused; its session is revoked" if reused
                       else "The refresh token is invalid")


async def logout(request: web.Request) -> web.Response:
    body = await read_json(request, RefreshToken)
    token_hash = refresh_token_hash(body.refresh_token)
    if token_hash is None:
        raise InvalidToken("The refresh token is invalid")
    await request.app[POOL].execute(Q.revoke_session_of_token, token_hash)  # unknown or spent: still 204
    return web.Response(status=204)


async def get_jwks(request: web.Request) -> web.Response:
    return responses.json(request.app[KEYS].jwks(), headers={"Cache-Control": "public, max-age=300"})
