"""The whole URL map on one screen, with the guard of each route and the cache policy of public reads."""

from __future__ import annotations

from aiohttp import web

from .cache import CACHE_POLICIES, Policy
from .guards import ADMIN, ANYONE, OWNER, ROUTE_GUARDS, USER, is_self_or_admin
from .handlers import admin, auth, events, health, users

ID = r"{id:[1-9][0-9]{0,18}}"  # positive integers only; anything else matches no route (404)

ROUTES = [
    # method   path                          handler              guard
    ("GET",    "/healthz",                   health.get_healthz,  ANYONE),
    ("GET",    "/readyz",                    health.get_readyz,   ANYONE),
    ("GET",    "/.well-known/jwks.json",     auth.get_jwks,       ANYONE),
    ("POST",   "/api/auth/login",            auth.login,          ANYONE),
    ("POST",   "/api/auth/refresh",          auth.refresh,        ANYONE),
    ("POST",   "/api/auth/logout",           auth.logout,         ANYONE),
    ("POST",   "/api/users",                 users.create_user,   ANYONE),
    ("GET",    "/api/users",                 users.list_users,    USER),
    ("GET",    "/api/users/me",              users.get_me,        USER),
    ("GET",    f"/api/users/{ID}",           users.get_user,      ANYONE),
    ("PATCH",  f"/api/users/{ID}",           users.patch_user,    OWNER),
    ("DELETE", f"/api/users/{ID}",           users.delete_user,   OWNER),
    ("GET",    "/api/admin/users",           admin.list_users,    ADMIN),
    ("PATCH",  f"/api/admin/users/{ID}",     admin.patch_user,    ADMIN),
    ("GET",    "/api/admin/events",          events.list_events,  ADMIN),
    ("POST",   f"/api/admin/events/{ID}/redeliver", events.redeliver_event, ADMIN),
]



def _profile_owner(request: web.Request) -> bool:
    return is_self_or_admin(request, int(request.match_info["id"]))


# Public reads served from the response cache, with the versions each depends on (server/cache.py).
# Every view that shows a user's name depends on `users`; writes bump what they change.
CACHED = {
    users.get_user: Policy("user", lambda r: ["users"], personal=_profile_owner),
}


def setup_routes(app: web.Application) -> None:
    guards, policies = {}, {}
    for method, path, handler, guard in ROUTES:
        route = app.router.add_route(method, path, handler)
        guards[route] = guard
        if handler in CACHED:
            policies[route] = CACHED[handler]
    app[ROUTE_GUARDS] = guards
    app[CACHE_POLICIES] = policies
