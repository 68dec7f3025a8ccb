"""Who may call a route: the guard each route declares in routes.py, checked before its handler."""

from __future__ import annotations

import enum

from aiohttp import web

ROUTE_GUARDS = web.AppKey("route_guards", dict)


class Guard(enum.Enum):
    ANYONE = "anyone"          # no token needed; an invalid one is still refused
    USER = "authenticated"     # any signed-in, enabled user
    OWNER = "owner-or-admin"   # signed in; the handler checks ownership of the resource it loads
    ADMIN = "admin"            # role admin


ANYONE, USER, OWNER, ADMIN = Guard.ANYONE, Guard.USER, Guard.OWNER, Guard.ADMIN
