"""The whole URL map on one screen, with the guard of each route and the cache policy of public reads."""

from __future__ import annotations

from aiohttp import web

from .cache import Policy
from .errors import MethodNotAllowed, NotFound
from .guards import ADMIN, ANYONE, OWNER, USER, Guard, is_self_or_admin
from .handlers import admin, auth, comments, events, health, ops, posts, tags, users
from .pipeline import PIPELINE, UNMATCHED, Pipeline
from .protocol import expect_continue

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
    tags.list_tags: Policy("tags", lambda r: ["tags"]),  # post counts only: comments leave it be
}


async def _no_route(request: web.Request) -> web.StreamResponse:
    raise NotFound("No such route")


def _no_method(allowed: list[str]):
    async def no_method(request: web.Request) -> web.StreamResponse:
        raise MethodNotAllowed(headers={"Allow": ", ".join(sorted(allowed))})
    return no_method


def add_route(app: web.Application, method: str, path: str, handler, guard: Guard = ANYONE,
              policy: Policy | None = None) -> web.Resource:
    """One route behind the app's pipeline (tests add their stand-in routes with it too)."""
    resource = app.router.add_resource(path)  # the path's resource, shared by its methods
    wrapped = app[PIPELINE].wrap(handler, resource.canonical, guard, policy)
    for each in methods_of(method):
        resource.add_route(each, wrapped, expect_handler=expect_continue)
    return resource


def methods_of(method: str) -> tuple[str, ...]:
    """A GET route also answers HEAD: the same answer and header fields without the body (RFC 9110
    9.3.2), which aiohttp leaves out itself. Uptime checks and `curl -I` use it."""
    return (method, "HEAD") if method == "GET" else (method,)


def setup_routes(app: web.Application, pipeline: Pipeline, routes=ROUTES) -> None:
    """Every route behind the pipeline; then, per path, its other methods (405 with Allow), and last every
    other path (404), so that no request reaches aiohttp's own plain-text answers."""
    app[PIPELINE] = pipeline
    methods: dict[web.Resource, list[str]] = {}
    for method, path, handler, guard in routes:
        resource = add_route(app, method, path, handler, guard, CACHED.get(handler))
        methods.setdefault(resource, []).extend(methods_of(method))
    for resource, allowed in methods.items():
        resource.add_route("*", pipeline.wrap(_no_method(allowed), UNMATCHED), expect_handler=expect_continue)
    app.router.add_route("*", r"/{path:[\s\S]*}", pipeline.wrap(_no_route, UNMATCHED, preflight=False),
                         expect_handler=expect_continue)
