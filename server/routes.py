"""The whole URL map on one screen, with the guard of each route."""

from __future__ import annotations

from aiohttp import web

from .guards import ADMIN, ANYONE, OWNER, ROUTE_GUARDS, USER  # noqa: F401 - the table below uses them
from .handlers import events, health, users

ID = r"{id:[1-9][0-9]{0,18}}"  # positive integers only; anything else matches no route (404)

ROUTES = [
    # method  path                         handler                 guard
    ("GET",   "/healthz",                  health.get_healthz,     ANYONE),
    ("GET",   "/readyz",                   health.get_readyz,      ANYONE),
    ("POST",  "/api/users",                users.create_user,      ANYONE),
    ("GET",   "/api/users",                users.list_users,       ANYONE),
    ("GET",   f"/api/users/{ID}",          users.get_user,         ANYONE),
    ("GET",   "/api/admin/events",         events.list_events,     ADMIN),
    ("POST",  f"/api/admin/events/{ID}/redeliver", events.redeliver_event, ADMIN),
]


def setup_routes(app: web.Application) -> None:
    guards = {}
    for method, path, handler, guard in ROUTES:
        route = app.router.add_route(method, path, handler)
        guards[route] = guard
    app[ROUTE_GUARDS] = guards
