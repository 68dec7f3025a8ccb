"""What the observe middleware costs: wrk -t1 -c32 -d5s on GET /api/users/1, with and without it.

    .venv/bin/python -m tests.bench_observe [rounds]

Variants: `bare` (the middleware removed), `metrics` (counted, access log off: the load-test setting),
`metrics+log` (counted and one JSON log line per request, to a file). Rounds alternate the variants to
spread the machine's noise; the report gives each variant's median req/s and its p99 latency.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

VARIANTS = {"bare": {"ACCESS_LOG": "false"}, "metrics": {"ACCESS_LOG": "false"},
            "metrics+log": {"ACCESS_LOG": "true"}}


def serve(variant: str) -> None:
    """Child process: the app of `variant` on PORT, as `serve` runs it (uvloop, aiohttp access log off)."""
    import uvloop
    from aiohttp import web

    from server.app import create_app
    from server.config import Config
    from server.logs import configure

    config = Config.from_env()
    configure("info", "json")
    app = create_app(config)
    if variant == "bare":
        app.middlewares.pop(0)  # the observe middleware is the outermost one
    web.run_app(app, host="127.0.0.1", port=config.port, access_log=None, print=None, loop=uvloop.new_event_loop())


def wrk(url: str) -> tuple[float, str]:
    out = subprocess.run(["wrk", "-t1", "-c32", "-d5s", "--latency", url], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    return rate, p99


def per_request_cost(n: int = 200_000) -> None:
    """The middleware's own CPU time per request, in process: no network, no database, no noise from wrk."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from server.app import create_app
    from server.config import Config

    async def handler(request):
        return web.Response(body=b"{}", content_type="application/json")

    async def run():
        for access_log in (False, True):
            config = Config(database_url="postgresql://unused", redis_url="redis://unused", access_log=access_log)
            app = create_app(config)
            middleware = app.middlewares[0]
            request = make_mocked_request("GET", "/api/users/1", app=app)
            match = await app.router.resolve(request)
            match.add_app(app)  # as the server does: request.app is the match's current app
            request._match_info = match
            start = time.perf_counter()
            for _ in range(n):
                await handler(request)
            bare = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(n):
                await middleware(request, handler)
            observed = time.perf_counter() - start
            print(f"observe middleware, access log {'on ' if access_log else 'off'}: "
                  f"{(observed - bare) / n * 1e6:.2f} µs per request ({n} requests)")

    import logging

    from server.logs import JsonFormatter
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    sink.setFormatter(JsonFormatter())  # formatted and written, as in production, to /dev/null
    logging.getLogger("server.access").addHandler(sink)
    logging.getLogger("server.access").propagate = False
    logging.getLogger("server.access").setLevel(logging.INFO)
    asyncio.run(run())


def main(rounds: int) -> None:
    import asyncpg
    import uvloop

    from server.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
    from server.migrate import migrate

    root = Path(tempfile.mkdtemp(prefix="blog-api-bench-"))
    root.chmod(0o755)
    pg, redis = EmbeddedPostgres(root / "postgres", disposable=True), EmbeddedRedis(root / "redis", persist=False)
    dsn, redis_url = pg.start(), redis.start()
    try:
        async def seed():
            await migrate(dsn)
            conn = await asyncpg.connect(dsn)
            await conn.execute("INSERT INTO users (email, username, password_hash) VALUES ('b@example.com', 'bench', 'x')")
            await conn.close()

        uvloop.run(seed())
        results: dict[str, list[tuple[float, str]]] = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            for variant, env in VARIANTS.items():
                port = free_port()
                environ = {**os.environ, **env, "DATABASE_URL": dsn, "REDIS_URL": redis_url, "PORT": str(port),
                           "VAR_DIR": str(root / "var"), "PG_POOL_MAX": "32"}
                with (root / f"{variant}.log").open("ab") as log:
                    child = subprocess.Popen([sys.executable, "-m", "tests.bench_observe", "--serve", variant],
                                             env=environ, stdout=log, stderr=log)
                try:
                    url = f"http://127.0.0.1:{port}/api/users/1"
                    for _ in range(100):
                        try:
                            urllib.request.urlopen(url, timeout=1)
                            break
                        except OSError:
                            time.sleep(0.1)
                    wrk(url)  # warm-up: pool connections, prepared statements
                    results[variant].append(wrk(url))
                finally:
                    child.terminate()
                    child.wait(10)
        print(f"wrk -t1 -c32 -d5s --latency http://127.0.0.1:PORT/api/users/1, {rounds} rounds, median")
        for variant, runs in results.items():
            rates = [r for r, _ in runs]
            print(f"{variant:12} {statistics.median(rates):8.0f} req/s   runs: {', '.join(f'{r:.0f}' for r in rates)}"
                  f"   p99: {', '.join(p for _, p in runs)}")
    finally:
        pg.stop()
        redis.stop()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        per_request_cost()
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
