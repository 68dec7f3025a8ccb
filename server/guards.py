"""Who may call a route: authorize() (run by server/pipeline.py), the guard each route declares, ownership checks."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator

from aiohttp import web

from .db import CONFIG
from .errors import Forbidden, InvalidToken, TokenExpired, Unauthorized
from .tokens import Claims, KeySet, TokenError, load_keyset, verify_access_token

KEYS = web.AppKey("keys", KeySet)
PRINCIPAL = web.RequestKey("principal", Claims)


class Guard(enum.Enum):
    ANYONE = "anyone"          # no token needed; an invalid one is still refused
    USER = "authenticated"     # any signed-in user
    OWNER = "owner-or-admin"   # signed in; the handler checks ownership of the resource it loads
    ADMIN = "admin"            # role admin


ANYONE, USER, OWNER, ADMIN = Guard.ANYONE, Guard.USER, Guard.OWNER, Guard.ADMIN


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[KEYS] = load_keyset(config.jwt_private_key, config.jwt_private_key_file, config.jwt_public_keys_file,
                            config.var_path)
    yield


def authenticate(request: web.Request) -> Claims | None:
    """The caller's verified claims, None when anonymous; 401 for any Authorization that is not valid."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <access token>'")
    config = request.app[CONFIG]
    try:
        return verify_access_token(request.app[KEYS], token, issuer=config.jwt_issuer, audience=config.jwt_audience)
    except TokenError as exc:
        raise (TokenExpired() if exc.expired else InvalidToken()) from None


def authorize(request: web.Request, guard: Guard) -> None:
    """Authentication before existence: a route's guard is checked before its handler loads anything
    (server/pipeline.py). Any Authorization given is checked, whatever the guard."""
    principal = authenticate(request)
    if principal is not None:
        request[PRINCIPAL] = principal
    if guard is not ANYONE:
        if principal is None:
            raise Unauthorized()
        if guard is ADMIN and principal.role != "admin":
            raise Forbidden("This needs the admin role")


def caller(request: web.Request) -> Claims | None:
    return request.get(PRINCIPAL)


def is_self_or_admin(request: web.Request, owner_id: int) -> bool:
    principal = request.get(PRINCIPAL)
    return principal is not None and (principal.user_id == owner_id or principal.role == "admin")


def require_owner_or_admin(request: web.Request, *owner_ids: int) -> Claims:
    """The caller, when they own the resource (any of `owner_ids`) or are an admin; else 403."""
    principal = request[PRINCIPAL]
    if principal.role != "admin" and principal.user_id not in owner_ids:
        raise Forbidden()
    return principal
