"""The wrk and autocannon scripts send what API.md describes: every scenario, both tools, one second each,
against a recording stand-in for the service (the routes they load are built on other branches)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections import Counter

import pytest
from aiohttp import web

from perf import tools
from perf.scenarios import HERE, SCENARIOS

pytestmark = pytest.mark.skipif(not shutil.which("wrk") or not (HERE / "node_modules" / "autocannon").is_dir()
                                or not shutil.which("node"), reason="needs wrk and autocannon: make perf-setup")

POSTS, USERS, PAGES = 500, 50, 25
TAG = r"(alpha|beta-2|c3)"
READS = {
    "health": r"/healthz", "user": r"/api/users/(\d+)", "post": r"/api/posts/(\d+)", "list": r"/api/posts",
    "list-page": r"/api/posts\?page=(\d+)", "list-cursor": r"/api/posts\?cursor=cur[12]",
    "list-tag": rf"/api/posts\?tag={TAG}", "user-posts": r"/api/users/(\d+)/posts", "tags": r"/api/tags",
}
WRITES = {"login": r"/api/auth/login", "signup": r"/api/users", "comment": r"/api/posts/(\d+)/comments",
          "create-post": r"/api/posts"}


def classify(method: str, path: str) -> str:
    table = READS if method == "GET" else WRITES
    for kind, pattern in table.items():
        if match := re.fullmatch(pattern, path):
            ids = [int(g) for g in match.groups() if g and g.isdigit()]
            limit = POSTS if kind in ("post", "comment") else PAGES if kind == "list-page" else USERS
            assert all(1 <= i <= limit for i in ids), (kind, path)
            return kind
    raise AssertionError(f"unexpected request {method} {path}")


def check_body(kind: str, request_headers, body: dict, seen_emails: set) -> None:
    if kind == "login":
        assert set(body) == {"email", "password"} and re.fullmatch(r"user\d+@example\.com", body["email"])
        assert 1 <= int(body["email"][4:].split("@")[0]) <= USERS
    elif kind == "signup":
        assert set(body) == {"email", "username", "password"} and re.fullmatch(r"[A-Za-z0-9_]{3,32}", body["username"])
        assert body["email"] not in seen_emails, "sign-up emails must be unique"
        seen_emails.add(body["email"])
    else:
        assert request_headers["Authorization"] in ("Bearer tok1", "Bearer tok2")
        if kind == "comment":
            assert set(body) == {"body"} and 1 <= len(body["body"]) <= 5000
        else:
            assert set(body) == {"title", "body", "tags"} and 1 <= len(body["title"]) <= 200
            assert 1 <= len(body["tags"]) <= 3 and all(re.fullmatch(TAG, t) for t in body["tags"])
    assert len(body.get("password", "12345678")) >= 8


async def _drive(aiohttp_server, tool: str, name: str, env: dict, rate: int = 0) -> tuple[Counter, dict]:
    """Runs one scenario against a recording stand-in; a request the contract does not allow is counted
    under "wrong: ..." (an assertion inside the handler would only turn into a 500 the tool counts)."""
    seen: Counter = Counter()
    emails: set = set()

    async def record(request: web.Request) -> web.Response:
        try:
            kind = classify(request.method, request.path_qs)
            if request.method == "POST":
                assert request.content_type == "application/json"
                check_body(kind, request.headers, json.loads(await request.read()), emails)
        except AssertionError as exc:
            kind = f"wrong: {request.method} {request.path_qs} {exc}"
        seen[kind] += 1
        return web.json_response({"data": {}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    load = tools.Load(f"http://127.0.0.1:{server.port}", 2 if not rate else 10, 1, rate=rate)
    proc = await asyncio.create_subprocess_exec(
        *tools.command(tool, SCENARIOS[name], load), env={**os.environ, **env, "PERF_WRK_DIR": str(HERE / "wrk")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return seen, tools.parse(out.decode())


@pytest.fixture
def script_env(tmp_path):
    (tmp_path / "tags.txt").write_text("alpha\nbeta-2\nc3\n")
    (tmp_path / "cursors.txt").write_text("cur1\ncur2\n")
    (tmp_path / "tokens.txt").write_text("tok1\ntok2\n")
    return {"PERF_POSTS": str(POSTS), "PERF_USERS": str(USERS), "PERF_PAGES": str(PAGES), "PERF_SEED": "3",
            "PERF_NONCE": "t1", "PERF_PASSWORD": "perf-password", "PERF_DATA": str(tmp_path)}


async def test_every_scenario_sends_contract_shaped_requests_with_both_tools(aiohttp_server, script_env):
    names = [n for n in SCENARIOS if n != "mixed"]
    runs = [(tool, name) for name in names for tool in ("wrk", "autocannon")]
    results = await asyncio.gather(*(_drive(aiohttp_server, tool, name, script_env) for tool, name in runs))
    for (tool, name), (seen, figures) in zip(runs, results):
        assert set(seen) == {name}, (tool, name, seen)
        # Every response the tool counts, the stand-in answered; on a loaded machine a one-second run may
        # end before any answer reaches the tool (36 runs share one event loop here), so 0 is allowed.
        assert figures["tool"] == tool and 0 <= figures["requests"] <= sum(seen.values())
        assert figures["errors"] == figures["non2xx"] == 0


@pytest.mark.parametrize("tool", ["wrk", "autocannon"])
async def test_mixed_is_nine_tenths_reads_and_one_tenth_authenticated_writes(aiohttp_server, script_env, tool):
    seen, _ = await _drive(aiohttp_server, tool, "mixed", script_env)
    total = sum(seen.values())
    writes = seen["comment"] + seen["create-post"]
    assert total > 300 and 0.05 <= writes / total <= 0.15, seen
    assert set(seen) == set(READS) - {"health", "user"} | {"comment", "create-post"}


async def test_the_open_loop_offers_the_asked_rate(aiohttp_server, script_env):
    seen, figures = await _drive(aiohttp_server, "autocannon", "post", script_env, rate=200)
    assert 140 <= figures["requests"] <= 260 and figures["rps"] == pytest.approx(200, rel=0.3)


async def test_layers_samples_req_per_s_and_the_cpu_each_request_cost_the_server(aiohttp_server):
    """`python -m perf layers` reads the serving processes' CPU from /proc around a wrk run: here the server
    is this process, and a handler that burns 2 ms of CPU per request must show up as at least that."""
    from perf import layers

    async def busy(request: web.Request) -> web.Response:
        end = time.process_time() + 0.002
        while time.process_time() < end:
            pass
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/busy", busy)
    server = await aiohttp_server(app)
    got = await asyncio.to_thread(layers.sample, f"http://127.0.0.1:{server.port}/busy", [os.getpid()], 1, 2)
    assert 0 < got.rps < 600  # 2 ms each, one at a time on this loop
    assert got.user_us + got.system_us >= 2000
