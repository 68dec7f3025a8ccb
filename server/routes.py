"""The whole URL map on one screen, with the guard of each route and the cache policy of public reads."""

from __future__ import annotations

from aiohttp import web

from .cache import CACHE_POLICIES, Policy
from .guards import ADMIN, ANYONE, OWNER, ROUTE_GUARDS, USER, is_self_or_admin
from .handlers import admin, auth, comments, events, health, ops, posts, tags, users

ID = r"{id:[1-9][0-9]{0,18}}"  # positive integers only; anything else matches no route (404)

ROUTES = [
    # method   path                          handler              guard
    ("GET",    "/healthz",                   health.get_healthz,  ANYONE),
    ("GET",    "/readyz",                    health.get_readyz,   ANYONE),
    ("GET",    "/metrics",                   ops.get_metrics,     ANYONE),
    ("GET",    "/api/openapi.json",          ops.get_openapi,     ANYONE),
    ("GET",    "/api/docs",                  ops.get_docs,        ANYONE),
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
    ("GET",    f"/api/users/{ID}/posts",     posts.list_user_posts, ANYONE),
    ("GET",    "/api/admin/users",           admin.list_users,    ADMIN),
    ("PATCH",  f"/api/admin/users/{ID}",     admin.patch_user,    ADMIN),
    ("GET",    "/api/admin/events",          events.list_events,  ADMIN),
    ("POST",   f"/api/admin/events/{ID}/redeliver", events.redeliver_event, ADMIN),
    # posts, comments, tags (OWNER: the handler loads the resource, 404, then checks ownership, 403)
    ("GET",    "/api/posts",                 posts.list_posts,    ANYONE),
    ("POST",   "/api/posts",                 posts.create_post,   USER),
    ("GET",    f"/api/posts/{ID}",           posts.get_post,      ANYONE),
    ("PATCH",  f"/api/posts/{ID}",           posts.patch_post,    OWNER),   # author or admin
    ("DELETE", f"/api/posts/{ID}",           posts.delete_post,   OWNER),   # author or admin
    ("GET",    f"/api/posts/{ID}/comments",  comments.list_comments, ANYONE),
    ("POST",   f"/api/posts/{ID}/comments",  comments.create_comment, USER),
    ("GET",    f"/api/comments/{ID}",        comments.get_comment, ANYONE),
    ("DELETE", f"/api/comments/{ID}",        comments.delete_comment, OWNER),  # its author, the post's, admin
    ("GET",    "/api/tags",                  tags.list_tags,      ANYONE),
]



def _profile_owner(request: web.Request) -> bool:
    return is_self_or_admin(request, int(request.match_info["id"]))


# Public reads served from the response cache, with the versions each depends on (server/cache.py).
# Every view that shows a user's name depends on `users`; writes bump what they change.
def _post(request: web.Request) -> str:
    return "post:" + request.match_info["id"]


CACHED = {
    users.get_user: Policy("user", lambda r: ["users"], personal=_profile_owner),
    posts.get_post: Policy("post", lambda r: [_post(r), "users"]),
    posts.list_posts: Policy("posts", lambda r: ["posts", "users"]),
    posts.list_user_posts: Policy("user-posts", lambda r: ["posts", "users"]),
    comments.list_comments: Policy("comments", lambda r: [_post(r), "users"]),
    comments.get_comment: Policy("comment", lambda r: ["comments", "users"]),
    tags.list_tags: Policy("tags", lambda r: ["posts"]),
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
