"""The bare baseline: the service's stack and named queries on the same paths, with nothing around them.

aiohttp on uvloop, the service's own pool (server.db.create_pool: same size, same settings) and the same
named statements with the same parameters as the handlers, answering the same bytes; but no request id,
envelope, validation, auth, rate limit, cache or ETag. What our layers cost shows as the ratio of the two.
"""

from __future__ import annotations

import base64
import datetime
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import orjson
import uvloop
from aiohttp import web

from server.config import Config
from server.db import Q, Pool, create_pool

POOL = web.AppKey("pool", Pool)
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
SCENARIOS = ["health", "user", "post", "list", "list-page", "list-cursor", "list-tag", "user-posts", "tags"]


def _json(value) -> web.Response:
    return web.Response(body=orjson.dumps(value, option=_OPTIONS), content_type="application/json")


def _data_text(text: str | None) -> web.Response:
    if text is None:
        return web.Response(status=404)
    return web.Response(body=b'{"data":' + text.encode() + b"}", content_type="application/json")


def _page(row, limit: int, page: int | None) -> web.Response:
    """The same `{data, meta}` bytes as server/listing.py's page_response."""
    cursor = None
    if row["more"]:
        key = orjson.dumps(["p", row["last_created_at"].isoformat(), row["last_id"]])
        cursor = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    meta = {"limit": limit, "total": row["total"], "nextCursor": cursor}
    if page is not None:
        meta["page"] = page
    return web.Response(body=b'{"data":' + row["data"].encode() + b',"meta":' + orjson.dumps(meta) + b"}",
                        content_type="application/json")


async def get_healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def get_user(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(Q.get_user_public, int(request.match_info["id"]))
    if row is None:
        return web.Response(status=404)
    return _json({"data": {"id": row["id"], "username": row["username"], "displayName": row["display_name"],
                           "bio": row["bio"], "createdAt": row["created_at"]}})


async def get_post(request: web.Request) -> web.Response:
    return _data_text(await request.app[POOL].fetchval(Q.get_post, int(request.match_info["id"])))


async def get_posts(request: web.Request) -> web.Response:
    pool, query = request.app[POOL], request.query
    limit = int(query.get("limit", "20"))
    if cursor := query.get("cursor"):
        _, created_at, last_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = (datetime.datetime.fromisoformat(created_at), last_id)
        return _page(await pool.fetchrow(Q.list_posts_after, limit, *after), limit, None)
    page = int(query.get("page", "1"))
    if tag := query.get("tag"):
        if page == 1:
            return _page(await pool.fetchrow(Q.list_posts_by_tag_first, limit, tag), limit, page)
        return _page(await pool.fetchrow(Q.list_posts_by_tag_page, limit, (page - 1) * limit, tag), limit, page)
    if page == 1:
        return _page(await pool.fetchrow(Q.list_posts_first, limit), limit, page)
    return _page(await pool.fetchrow(Q.list_posts_page, limit, (page - 1) * limit), limit, page)


async def get_user_posts(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(Q.user_posts_first, 20, int(request.match_info["id"]))
    return web.Response(status=404) if row is None else _page(row, 20, 1)


async def get_tags(request: web.Request) -> web.Response:
    return _data_text(await request.app[POOL].fetchval(Q.list_tags, int(request.query.get("limit", "50"))))


async def get_info(request: web.Request) -> web.Response:
    return _json({"scenarios": SCENARIOS, "skipped": {}})


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await create_pool(Config.from_env())
    yield
    await app[POOL].close()


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(pool_ctx)
    ident = r"{id:[1-9][0-9]{0,18}}"
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/_baseline", get_info)
    app.router.add_get("/api/posts", get_posts)
    app.router.add_get(f"/api/posts/{ident}", get_post)
    app.router.add_get(f"/api/users/{ident}", get_user)
    app.router.add_get(f"/api/users/{ident}/posts", get_user_posts)
    app.router.add_get("/api/tags", get_tags)
    return app


def serve() -> int:
    config = Config.from_env()
    web.run_app(create_app(), host=config.host, port=config.port, reuse_port=True, access_log=None, print=None,
                loop=uvloop.new_event_loop())
    return 0


def launch(processes: int) -> int:
    """`processes` serving children in this process's session, which the runner makes a new one: under the
    kernel's autogroup scheduling a session is one CPU-scheduling group, and the service's workers share
    one too (server/supervisor.py). SIGTERM and SIGINT are passed on; exits 0 when every child stopped as
    asked (exit 0, or ended by the signal passed on: one still starting has no handler for it yet), else 1."""
    children: list[subprocess.Popen] = []
    asked: set[int] = set()  # the signals passed on, as a child's returncode shows death by one (-signum)
    sent: dict[int, set[int]] = {}  # child pid -> the signals it was sent

    def send(child: subprocess.Popen, signum: int) -> None:
        if child.poll() is None and signum not in sent[child.pid]:
            sent[child.pid].add(signum)
            child.send_signal(signum)

    def forward(signum, _frame) -> None:
        asked.add(-signum)
        for child in children:
            send(child, signum)

    signal.signal(signal.SIGTERM, forward)  # before the first child starts, so none is left behind
    signal.signal(signal.SIGINT, forward)
    for _ in range(processes):
        child = subprocess.Popen([sys.executable, "-m", "perf.baseline"])
        sent[child.pid] = set()
        children.append(child)
        for code in sorted(asked):  # a signal that came while this child was being started missed it
            send(child, -code)
    codes = [child.wait() for child in children]
    return 0 if all(code == 0 or code in asked for code in codes) else 1


def main(argv: list[str]) -> int:
    """`python -m perf.baseline` serves; `python -m perf.baseline --processes N` starts N that do."""
    if not argv:
        return serve()
    if argv[0] == "--processes" and len(argv) == 2 and argv[1].isdigit() and int(argv[1]) > 0:
        return launch(int(argv[1]))
    print("usage: python -m perf.baseline [--processes N]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
