"""The bare baseline: the service's stack and named queries on the same paths, with no middleware at all.

aiohttp on uvloop, the service's own asyncpg pool (server.db.create_pool: same size, same settings)
and orjson, but no request id, envelope, auth, rate limit or cache: what our layers cost shows as the
ratio of the two. Each scenario runs the named queries listed in PLANS; a scenario whose queries are
missing from sql/queries, or take other parameters than listed, is skipped and the reason is served at
GET /_baseline for the runner's report. When the posts branch lands, align PLANS with what its
handlers execute per request.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import orjson
import uvloop
from aiohttp import web

from server.config import Config
from server.db import Q, create_pool

POOL = web.AppKey("pool", asyncpg.Pool)
SERVED = web.AppKey("served", dict)
SKIPPED = web.AppKey("skipped", dict)
LIMIT = 20
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC

# scenario: (shape, [(query name, parameter names)]); `after` expands to the cursor's sort key.
PLANS = {
    "user": ("one", [("get_user_public", ("id",))]),
    "post": ("one", [("get_post", ("id",))]),
    "list": ("page", [("list_posts_page", ("limit1", "offset"))]),
    "list-cursor": ("page", [("list_posts_after", ("limit1", "after"))]),
    "list-tag": ("page", [("list_posts_by_tag_page", ("tag", "limit1", "offset"))]),
    "user-posts": ("user-page", [("get_user_public", ("id",)), ("list_user_posts_page", ("id", "limit1", "offset"))]),
    "tags": ("all", [("list_tags", ("limit",))]),
}
_COERCE = {"int2": int, "int4": int, "int8": int, "text": str, "citext": str, "varchar": str,
           "timestamptz": lambda v: datetime.fromisoformat(v) if isinstance(v, str) else v}


def _json(value, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value, option=_OPTIONS), status=status, content_type="application/json")


def _item(row: asyncpg.Record):
    """A row as JSON: its one column when PostgreSQL built the JSON, else the row as an object."""
    return row[0] if len(row) == 1 and isinstance(row[0], (dict, list)) else dict(row)


def _inputs(request: web.Request) -> dict:
    page = int(request.query.get("page", "1"))
    values = {"limit": LIMIT, "limit1": LIMIT + 1, "offset": (page - 1) * LIMIT, "page": page,
              "tag": request.query.get("tag")}
    if "id" in request.match_info:
        values["id"] = int(request.match_info["id"])
    if cursor := request.query.get("cursor"):
        values["after"] = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[1:]
    return values


async def _answer(request: web.Request, scenario: str) -> web.Response:
    shape, steps = PLANS[scenario]
    values, results = _inputs(request), []
    types = request.app[SERVED][scenario]
    async with request.app[POOL].acquire() as conn:  # one connection for the request's statements
        for (name, params), kinds in zip(steps, types):
            args = [v for p in params for v in (values[p] if p == "after" else [values[p]])]
            args = [_COERCE.get(k, lambda v: v)(a) for a, k in zip(args, kinds)]
            results.append(await conn.fetch(Q[name], *args))
    rows = results[-1]
    if shape == "one":
        return _json({"data": _item(rows[0])}) if rows else _json({"error": "not found"}, 404)
    if shape == "all":
        return _json({"data": [_item(r) for r in rows]})
    items = [_item(r) for r in rows[:LIMIT] if "id" not in r.keys() or r["id"] is not None]
    meta = {"limit": LIMIT, "total": rows[0]["total"] if rows and "total" in rows[0].keys() else None,
            "nextCursor": None, "page": values["page"]}
    if shape == "user-page":
        if not results[0]:
            return _json({"error": "not found"}, 404)
        return _json({"data": {"user": _item(results[0][0]), "posts": items}, "meta": meta})
    return _json({"data": items, "meta": meta})


async def get_healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def get_posts(request: web.Request) -> web.Response:
    scenario = "list-cursor" if "cursor" in request.query else "list-tag" if "tag" in request.query else "list"
    if scenario not in request.app[SERVED]:
        raise web.HTTPNotFound()
    return await _answer(request, scenario)


def _route(scenario: str):
    async def handler(request: web.Request) -> web.Response:
        if scenario not in request.app[SERVED]:
            raise web.HTTPNotFound()
        return await _answer(request, scenario)
    return handler


async def _check(conn: asyncpg.Connection) -> tuple[dict, dict]:
    """{scenario: parameter types per statement} for the plans that prepare as listed; reasons for the rest."""
    served, skipped = {}, {}
    for scenario, (_, steps) in PLANS.items():
        kinds = []
        for name, params in steps:
            if name not in Q:
                skipped[scenario] = f"no named query {name} yet"
                break
            types = [t.name for t in (await conn.prepare(Q[name])).get_parameters()]
            fixed = len([p for p in params if p != "after"])
            if len(types) != fixed and not ("after" in params and len(types) > fixed):
                skipped[scenario] = f"{name} takes {len(types)} parameters, the baseline passes {params}"
                break
            kinds.append(types)
        else:
            served[scenario] = kinds
    return served, skipped


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    config = Config.from_env()
    app[POOL] = await create_pool(config)
    async with app[POOL].acquire() as conn:
        served, skipped = await _check(conn)
    app[SERVED].update(served)
    app[SKIPPED].update(skipped)
    yield
    await app[POOL].close()


async def get_info(request: web.Request) -> web.Response:
    served = ["health"] + list(request.app[SERVED]) + (["list-page"] if "list" in request.app[SERVED] else [])
    return _json({"scenarios": served, "skipped": request.app[SKIPPED]})


def create_app() -> web.Application:
    app = web.Application()
    app[SERVED], app[SKIPPED] = {}, {}
    app.cleanup_ctx.append(pool_ctx)
    ident = r"{id:[1-9][0-9]{0,18}}"
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/_baseline", get_info)
    app.router.add_get("/api/posts", get_posts)
    app.router.add_get(f"/api/posts/{ident}", _route("post"))
    app.router.add_get(f"/api/users/{ident}", _route("user"))
    app.router.add_get(f"/api/users/{ident}/posts", _route("user-posts"))
    app.router.add_get("/api/tags", _route("tags"))
    return app


def main() -> int:
    config = Config.from_env()
    web.run_app(create_app(), host=config.host, port=config.port, reuse_port=True, access_log=None, print=None,
                loop=uvloop.new_event_loop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
