"""Rate limits: the GCRA guarantee, shared budgets, policies, header fields, trusted proxies, the switch."""

from __future__ import annotations

import asyncio
import random

import http_sf
import pytest
import redis.asyncio as redis
from aiohttp import web
from multidict import CIMultiDict

from server import gcra
from server.app import create_app
from server.clientip import ClientIp
from server.config import Config, ConfigError, parse_networks, parse_rate
from server.db import CONFIG
from server.guards import ANYONE
from server.pipeline import Pipeline
from server.ratelimit import LIMITER, LOGIN_PATH, Policy, ratelimit_ctx
from server.redisdb import redis_ctx
from server.routes import add_route, setup_routes

N = 10  # the default policy in these tests: 10 per hour, so one request comes back every 360 s


async def ping(request: web.Request) -> web.Response:
    return web.json_response({"data": "pong"})


def limited_app(config: Config) -> web.Application:
    """The real app, plus an anonymous /api/ route that answers 200 without touching the database."""
    app = create_app(config)
    add_route(app, "GET", "/api/ping", ping)
    return app


@pytest.fixture
def config(make_config) -> Config:
    return make_config(rate_limit=f"{N}/1h", rate_limit_login="3/1h")


@pytest.fixture
async def client(aiohttp_client, config, db):
    return await aiohttp_client(limited_app(config))


def fields(response) -> tuple[dict, dict]:
    """RateLimit-Policy and RateLimit parsed as the structured-field lists they must be, by name."""
    policy = http_sf.parse(response.headers["RateLimit-Policy"].encode(), tltype="list")
    state = http_sf.parse(response.headers["RateLimit"].encode(), tltype="list")
    return dict(policy), dict(state)


# --- the algorithm ------------------------------------------------------------------------------------

@pytest.fixture
async def script(base_config, db):
    """The Lua script on the test Redis, called with explicit clock values."""
    client = redis.Redis.from_url(base_config.redis_url)
    yield client.register_script(gcra.LUA)
    await client.aclose()


def admitted_bound(policy: Policy, admitted: list[int]) -> None:
    """The README's guarantee: in any interval of length L, at most N + floor(L·N/W) admitted."""
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            length = admitted[j] - admitted[i]
            assert j - i + 1 <= policy.count + length * policy.count // (policy.window * 1_000_000), (i, j)


@pytest.mark.parametrize("rate", ["5/1s", "7/1s", "3/2s", "100/15m"])
async def test_script_and_fallback_agree_and_keep_the_guarantee(script, rate):
    """One random schedule of arrivals, bursts and pauses included, through the Lua script in Redis and
    through its in-process twin, with the same clock values: identical answers, and the bound holds."""
    policy = Policy.parse("default", rate)
    other = Policy.parse("login", "2/1s")
    local = gcra.LocalGcra(1000)
    rng = random.Random(rate)
    now, admitted, wait = 1_700_000_000_000_000, [], 0
    step = policy.span // policy.count
    for _ in range(400):
        # Gaps of every kind, and arrivals one microsecond before and exactly when a refusal said to retry.
        gaps = [0, 0, 1, rng.randrange(step), rng.randrange(3 * step), 2 * policy.span]
        now += rng.choice(gaps + ([wait - 1, wait] * 2 if wait else []))
        two = rng.random() < 0.3  # sometimes a second key under another policy, decided together
        keys = ["a"] + (["b"] if two else [])
        args = (str(now), policy.interval, policy.span) + ((other.interval, other.span) if two else ())
        want = rng.choice([None, None, 1, 2, 5])  # sometimes a share of several at once
        args += (want,) if want else ()
        in_redis = await script(keys=keys, args=args)
        assert in_redis == local(keys, args)
        wait = in_redis[0]
        if wait == 0:
            granted = in_redis[-1] if want else 1
            assert 1 <= granted <= want if want else True
            admitted += [now] * granted
    admitted_bound(policy, admitted)
    assert len(admitted) > policy.count  # the schedule did reach the limit and come back


@pytest.mark.parametrize("where", ["redis", "local"])
async def test_the_bound_is_reached_exactly(script, where):
    """A greedy client gets N at once, then exactly one per T: the guarantee is tight, not loose."""
    policy = Policy.parse("default", "4/1s")  # T = 250 ms
    local = gcra.LocalGcra(10)
    start = 1_000_000_000

    async def charge(at: int) -> int:
        args = (str(at), policy.interval, policy.span)
        return (await script(keys=["k"], args=args) if where == "redis" else local(["k"], args))[0]

    assert [await charge(start) for _ in range(6)] == [0] * 4 + [250_000] * 2
    assert await charge(start + 249_999) == 1  # one microsecond early: refused, and told so
    assert await charge(start + 250_000) == 0
    assert await charge(start + 250_000) == 250_000


@pytest.mark.parametrize("where", ["redis", "local"])
async def test_a_share_takes_what_fits_and_no_more(script, where):
    """`want` admits up to that many at once, as many as fit, and says how many; refused, it charges nothing."""
    policy = Policy.parse("default", "4/1s")  # T = 250 ms
    local = gcra.LocalGcra(10)

    async def charge(at: int, want: int) -> list[int]:
        args = (str(at), policy.interval, policy.span, want)
        return await script(keys=["k"], args=args) if where == "redis" else local(["k"], args)

    assert await charge(10**9, 3) == [0, 1, 750_000, 3]
    assert await charge(10**9, 3) == [0, 0, 1_000_000, 1]  # one fits
    assert await charge(10**9, 3) == [250_000, 0, 1_000_000, 0]
    assert await charge(10**9 + 500_000, 5) == [0, 0, 1_000_000, 2]


def test_fallback_memory_is_bounded():
    local = gcra.LocalGcra(3)
    for i in range(10):
        local([f"client{i}"], ("1", 100, 1000))
    assert len(local) == 3


async def test_one_key_per_client_per_policy_with_a_ttl(client, db, base_config):
    for _ in range(3):
        await client.get("/api/ping")
    r = redis.Redis.from_url(base_config.redis_url)
    keys = await r.keys("rl:*")
    assert keys == [b"rl:default:127.0.0.1"]
    assert 0 < await r.pttl(keys[0]) <= 3 * 360_000  # until the three requests are given back
    await r.aclose()


# --- shared budgets and concurrency -------------------------------------------------------------------

async def test_two_instances_share_one_budget(aiohttp_client, config, db):
    a = await aiohttp_client(limited_app(config))
    b = await aiohttp_client(limited_app(config))
    seen = []
    for i in range(N + 2):
        response = await (a if i % 2 else b).get("/api/ping")
        seen.append((response.status, fields(response)[1]["default"]["r"]))
    assert seen == [(200, N - 1 - i) for i in range(N)] + [(429, 0), (429, 0)]


async def test_3n_concurrent_requests_in_a_fresh_window_admit_exactly_n(aiohttp_client, config, db):
    """All 3N arrive within one emission interval (360 s), so the guarantee admits exactly N, and each
    admitted request sees a different remaining count: the decisions did not race."""
    a = await aiohttp_client(limited_app(config))
    b = await aiohttp_client(limited_app(config))
    responses = await asyncio.gather(*((a if i % 2 else b).get("/api/ping") for i in range(3 * N)))
    admitted = [r for r in responses if r.status == 200]
    refused = [r for r in responses if r.status == 429]
    assert (len(admitted), len(refused)) == (N, 2 * N)
    assert sorted(fields(r)[1]["default"]["r"] for r in admitted) == list(range(N))
    assert all(0 < int(r.headers["Retry-After"]) <= 360 for r in refused)


async def test_a_request_comes_back_after_one_emission_interval(aiohttp_client, make_config, db):
    client = await aiohttp_client(limited_app(make_config(rate_limit="2/1s")))  # T = 0.5 s
    assert [(await client.get("/api/ping")).status for _ in range(3)] == [200, 200, 429]
    await asyncio.sleep(0.55)
    assert [(await client.get("/api/ping")).status for _ in range(2)] == [200, 429]


# --- header fields and the 429 --------------------------------------------------------------------------

async def test_header_fields_count_the_current_request(client):
    response = await client.get("/api/ping")
    policy, state = fields(response)
    assert response.headers["RateLimit-Policy"] == f'"default";q={N};w=3600'
    assert policy == {"default": {"q": N, "w": 3600}}
    assert state == {"default": {"r": N - 1, "t": 360}}  # t: until the whole quota is back
    assert response.headers["RateLimit"] == f'"default";r={N - 1};t=360'
    response = await client.get("/api/ping")
    assert fields(response)[1] == {"default": {"r": N - 2, "t": 720}}


async def test_429_is_the_envelope_with_retry_after_and_the_fields(client):
    for _ in range(N):
        assert (await client.get("/api/ping")).status == 200
    response = await client.get("/api/ping", headers={"X-Request-Id": "limited-1"})
    assert response.status == 429
    assert await response.json() == {"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests",
                                               "requestId": "limited-1"}}
    assert 355 <= int(response.headers["Retry-After"]) <= 360
    assert fields(response)[1]["default"]["r"] == 0
    assert 3595 <= fields(response)[1]["default"]["t"] <= 3600
    # A refused request charges nothing: the wait does not grow with retries.
    again = await client.get("/api/ping")
    assert int(again.headers["Retry-After"]) <= int(response.headers["Retry-After"])


async def _boom(request):
    raise RuntimeError("unexpected")


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/api/ping", {}, 200),
    ("GET", "/api/users/999", {}, 404),          # no such user
    ("GET", "/api/nowhere", {}, 404),            # no such route, still under /api/
    ("PUT", "/api/users", {}, 405),
    ("POST", "/api/users", {"data": b"{}"}, 415),
    ("POST", "/api/users", {"json": {"x": "y" * 2048}}, 413),
    ("GET", "/api/boom", {}, 500),
])
async def test_every_api_answer_carries_the_fields_and_counts(aiohttp_client, make_config, db, method, path,
                                                              kwargs, status):
    app = limited_app(make_config(rate_limit=f"{N}/1h", body_limit=1024))
    add_route(app, "GET", "/api/boom", _boom)
    client = await aiohttp_client(app)
    for i in range(2):
        response = await client.request(method, path, **kwargs)
        assert response.status == status
        assert fields(response)[1]["default"]["r"] == N - 1 - i


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/nope", "/apix"])
async def test_other_paths_are_not_counted_and_carry_no_fields(client, path):
    for _ in range(N + 1):
        response = await client.get(path)
        assert response.status != 429
        assert "RateLimit" not in response.headers and "RateLimit-Policy" not in response.headers
    assert fields(await client.get("/api/ping"))[1]["default"]["r"] == N - 1


# --- client addresses ---------------------------------------------------------------------------------

async def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(aiohttp_client, make_config, db):
    client = await aiohttp_client(limited_app(make_config(rate_limit=f"{N}/1h", trusted_proxies="10.0.0.0/8")))
    for i in range(N):
        spoof = {"X-Forwarded-For": f"198.51.100.{i}"} if i % 2 else {}
        assert fields(await client.get("/api/ping", headers=spoof))[1]["default"]["r"] == N - 1 - i
    for spoof in ("203.0.113.9", "10.0.0.1", "1.2.3.4, 10.0.0.2", "garbage", ""):
        assert (await client.get("/api/ping", headers={"X-Forwarded-For": spoof})).status == 429


async def test_forwarded_for_from_a_trusted_proxy_selects_the_client(aiohttp_client, make_config, db, base_config):
    client = await aiohttp_client(limited_app(make_config(rate_limit="2/1h", trusted_proxies="127.0.0.1, 10.0.0.0/8")))
    via = lambda chain: {"X-Forwarded-For": chain}  # noqa: E731
    assert (await client.get("/api/ping", headers=via("203.0.113.5"))).status == 200
    # Whatever the client prepends is ignored; trusted hops on the right are skipped.
    assert (await client.get("/api/ping", headers=via("6.6.6.6, 203.0.113.5, 10.1.2.3"))).status == 200
    assert (await client.get("/api/ping", headers=via("7.7.7.7, 203.0.113.5"))).status == 429
    assert (await client.get("/api/ping", headers=via("203.0.113.6"))).status == 200
    assert (await client.get("/api/ping")).status == 200  # the proxy's own requests: its own budget
    r = redis.Redis.from_url(base_config.redis_url)
    assert sorted(await r.keys("rl:*")) == [b"rl:default:127.0.0.1", b"rl:default:203.0.113.5",
                                            b"rl:default:203.0.113.6"]
    await r.aclose()


@pytest.mark.parametrize("trusted, peer, chain, client", [
    ("", "192.0.2.1", ["203.0.113.5"], "192.0.2.1"),
    ("10.0.0.0/8", "192.0.2.1", ["203.0.113.5"], "192.0.2.1"),
    ("10.0.0.0/8", "10.0.0.1", [], "10.0.0.1"),
    ("10.0.0.0/8", "10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
    ("10.0.0.0/8", "10.0.0.1", ["1.1.1.1, 203.0.113.5"], "203.0.113.5"),
    ("10.0.0.0/8", "10.0.0.1", ["1.1.1.1", "203.0.113.5, 10.9.9.9"], "203.0.113.5"),  # two header lines
    ("10.0.0.0/8", "10.0.0.1", ["10.0.0.7, 10.0.0.8"], "10.0.0.7"),  # only proxies: the left-most
    ("10.0.0.0/8", "10.0.0.1", ["203.0.113.5:4711"], "203.0.113.5"),
    ("10.0.0.0/8", "10.0.0.1", ["unknown"], "10.0.0.1"),  # nonsense from a proxy: the proxy stands in
    ("10.0.0.0/8", "10.0.0.1", ["2001:db8:1:2:3:4:5:6"], "2001:db8:1:2::/64"),
    ("10.0.0.0/8", "10.0.0.1", ["[2001:db8:1:2::9]:80"], "2001:db8:1:2::/64"),
    ("::1", "::1", ["203.0.113.5"], "203.0.113.5"),
    ("10.0.0.0/8", "::ffff:10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
    ("", "2001:db8:aa:bb:1::1", [], "2001:db8:aa:bb::/64"),
    ("", "::ffff:192.0.2.7", [], "192.0.2.7"),
])
def test_client_address_resolution(trusted, peer, chain, client):
    headers = CIMultiDict(("X-Forwarded-For", value) for value in chain)
    assert ClientIp(parse_networks(trusted)).resolve(peer, headers) == client


# --- the login policy ---------------------------------------------------------------------------------

@pytest.fixture
async def login_client(aiohttp_client, make_config, db):
    """The limiter in front of a stand-in login handler that reads the body the limiter read first
    (a stand-in, so this does not depend on the auth handler's answers)."""
    async def echo(request):
        return web.Response(body=await request.read(), content_type="application/json")

    config = make_config(rate_limit=f"{N}/1h", rate_limit_login="3/1h", trusted_proxies="127.0.0.1",
                         metrics_enabled=False)
    app = web.Application()
    app[CONFIG] = config
    app.cleanup_ctx.extend([redis_ctx, ratelimit_ctx])
    setup_routes(app, Pipeline(config, app), [("POST", LOGIN_PATH, echo, ANYONE)])  # not cached
    return await aiohttp_client(app)


def login(client, email, ip="203.0.113.1"):
    return client.post(LOGIN_PATH, json={"email": email, "password": "x"}, headers={"X-Forwarded-For": ip})


async def test_login_is_limited_per_address(login_client):
    statuses = [(await login(login_client, f"user{i}@example.com")).status for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert (await login(login_client, "user9@example.com", ip="203.0.113.2")).status == 200


async def test_login_is_limited_per_email_whatever_the_address(login_client):
    emails = ["ann@example.com", "Ann@Example.com", " ann@example.COM", "ann@example.com"]
    statuses = [(await login(login_client, email, ip=f"203.0.113.{i}")).status for i, email in enumerate(emails)]
    assert statuses == [200, 200, 200, 429]
    assert (await login(login_client, "bob@example.com", ip="203.0.113.3")).status == 200


async def test_login_fields_list_both_policies_and_the_body_reaches_the_handler(login_client):
    response = await login(login_client, "ann@example.com")
    assert await response.json() == {"email": "ann@example.com", "password": "x"}
    policy, state = fields(response)
    assert policy == {"default": {"q": N, "w": 3600}, "login": {"q": 3, "w": 3600}}
    assert state == {"default": {"r": N - 1, "t": 360}, "login": {"r": 2, "t": 1200}}
    # Other routes show the default policy only.
    other = await login_client.get("/api/x", headers={"X-Forwarded-For": "203.0.113.1"})
    assert other.status == 404 and fields(other) == ({"default": {"q": N, "w": 3600}}, {"default": {"r": N - 2, "t": 720}})


async def test_a_login_refused_by_one_policy_charges_none(login_client):
    for i in range(3):
        await login(login_client, "ann@example.com", ip=f"203.0.113.{i}")
    refused = await login(login_client, "ann@example.com", ip="203.0.113.50")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 1000
    assert fields(refused)[1] == {"default": {"r": N, "t": 0}, "login": {"r": 0, "t": 3600}}
    assert fields(await login(login_client, "bob@example.com", ip="203.0.113.50"))[1]["default"]["r"] == N - 1


async def test_the_real_app_limits_login(aiohttp_client, make_config, db):
    """Whatever the auth handler answers (401 for an unknown email; 404 before it exists), the login
    policy counts it and shows on it."""
    client = await aiohttp_client(limited_app(make_config(rate_limit=f"{N}/1h", rate_limit_login="3/1h")))
    answers = [await client.post(LOGIN_PATH, json={"email": "ann@example.com", "password": "wrong password"})
               for _ in range(4)]
    assert [a.status == 429 for a in answers] == [False, False, False, True]
    assert [fields(a)[1]["login"]["r"] for a in answers] == [2, 1, 0, 0]
    state = fields(await client.get("/api/ping"))[1]["default"]
    assert state["r"] == N - 4 and 1435 <= state["t"] <= 1440  # the refused login charged nothing


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"email": 5}', b'{"password": "x"}', b""])
async def test_unreadable_login_bodies_count_per_address_only(login_client, body):
    statuses = []
    for _ in range(4):
        response = await login_client.post(LOGIN_PATH, data=body, headers={"Content-Type": "application/json"})
        statuses.append(response.status)
    assert statuses[3] == 429 and 429 not in statuses[:3]


async def test_a_login_body_over_the_limit_is_413_declared_or_chunked(aiohttp_client, make_config, db):
    """The limiter reads a login's body for its email; past BODY_LIMIT that read fails, and the 413 it
    raised still reaches the client, counted, whether the length was declared or the body chunked."""
    client = await aiohttp_client(limited_app(make_config(rate_limit=f"{N}/1h", body_limit=1024)))

    async def chunks():
        for _ in range(4):
            yield b"y" * 512

    declared = await client.post(LOGIN_PATH, json={"email": "ann@example.com", "password": "x" * 2048})
    chunked = await client.post(LOGIN_PATH, data=chunks(), headers={"Content-Type": "application/json"})
    assert "Content-Length" not in chunked.request_info.headers
    for i, response in enumerate([declared, chunked]):
        assert response.status == 413 and (await response.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert fields(response)[1]["default"]["r"] == N - 1 - i and "login" in fields(response)[1]


# --- configuration and the switch ---------------------------------------------------------------------

@pytest.mark.parametrize("text, parsed", [
    ("100/15m", (100, 900)), ("10/900s", (10, 900)), ("5/1h", (5, 3600)), ("60/m", (60, 60)),
    ("3/30", (3, 30)), ("1/1d", (1, 86400)), (" 7 / 2m ", (7, 120)), ("1000000000/1m", (10**9, 60)),
])
def test_rate_syntax(text, parsed):
    assert parse_rate(text) == parsed


async def test_a_load_test_limit_over_one_per_microsecond(script):
    """perf/ raises the limits to 10^9 per minute: served at one per microsecond, N at once still."""
    policy = Policy.parse("default", "1000000000/1m")
    assert (policy.interval, policy.span) == (1, 10**9)
    args = ("1700000000000000", policy.interval, policy.span)
    assert await script(keys=["k"], args=args) == [0, 10**9 - 1, 1]


@pytest.mark.parametrize("env, needle", [
    ({"RATE_LIMIT": "100"}, "RATE_LIMIT: '100' is not N/W"),
    ({"RATE_LIMIT": "0/15m"}, "RATE_LIMIT: '0/15m' needs"),
    ({"RATE_LIMIT": "10000000000000/1s"}, "needs 1 to 10\\^12"),
    ({"RATE_LIMIT_LOGIN": "10/0s"}, "RATE_LIMIT_LOGIN: '10/0s' needs"),
    ({"RATE_LIMIT": "10/1w"}, "RATE_LIMIT: '10/1w' is not N/W"),
    ({"RATE_LIMIT": "many/1m"}, "is not N/W"),
    ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}, "TRUSTED_PROXIES"),
    ({"RATE_LIMIT_ENABLED": "maybe"}, "RATE_LIMIT_ENABLED='maybe'"),
    ({"REDIS_TIMEOUT": "0"}, "REDIS_TIMEOUT must be"),
    ({"REDIS_BREAKER_FAILURES": "0"}, "REDIS_BREAKER_FAILURES must be"),
])
def test_bad_limits_are_named(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Config.from_env(env)


@pytest.mark.parametrize("value, enabled", [(None, True), ("", True), ("true", True), ("false", False),
                                            ("FALSE", False)])
def test_only_an_explicit_false_turns_the_limiter_off(value, enabled):
    env = {} if value is None else {"RATE_LIMIT_ENABLED": value}
    assert Config.from_env(env).rate_limit_enabled is enabled


async def test_disabled_limiter_neither_limits_nor_shows_fields(aiohttp_client, make_config, db):
    client = await aiohttp_client(limited_app(make_config(rate_limit="2/1h", rate_limit_enabled=False)))
    for _ in range(5):
        response = await client.get("/api/ping")
        assert response.status == 200
        assert "RateLimit" not in response.headers and "RateLimit-Policy" not in response.headers
    assert client.app[LIMITER].enabled is False


# --- shares: many requests of one client through one process ------------------------------------------

async def _limiter(base_config, rate: str, servers=None, **settings):
    """A Limiter on the test Redis (or on a server of the test's own), as ratelimit_ctx builds it."""
    from server.breaker import Breaker
    from server.ratelimit import Limiter
    from server.redisbatch import ScriptBatcher
    from server.redisdb import create_client
    from server.resp import RespConnection
    url = servers().url if servers else base_config.redis_url
    config = Config(redis_url=url, rate_limit=rate, **settings)
    client = create_client(url, 4)
    batcher = ScriptBatcher(client, Breaker(timeout=0.5, failures=3, reset=1), RespConnection(url))
    return Limiter(config, client, batcher), client, batcher


async def test_a_busy_client_is_admitted_from_shares_never_past_its_quota(base_config, db):
    """N = 300 an hour (shares of up to 3): 400 quick requests, 300 admitted; the fields count down by one
    per request as if each were decided alone, with fewer decisions in Redis than requests."""
    limiter, client, batcher = await _limiter(base_config, "300/1h")
    assert limiter.share_cap == 3
    try:
        decisions = [await limiter.check("10.0.0.1") for _ in range(290)]
        assert batcher.batches < 110  # shares of 1, 2, then 3: about a third of the requests went to Redis
        decisions += [await limiter.check("10.0.0.1") for _ in range(110)]
        admitted = [d for d in decisions if d.allowed]
        assert 297 <= len(admitted) <= 300  # a share given up (over 100 ms) may cost up to 3
        remaining = [int(d.fields["RateLimit"].split("r=")[1].split(";")[0]) for d in admitted]
        assert remaining == list(range(299, 299 - len(admitted), -1))
        assert all(not d.allowed for d in decisions[len(admitted):])  # refused ever after, each in Redis
    finally:
        batcher.close()
        await client.aclose()


async def test_concurrent_requests_of_one_client_never_pass_the_quota(base_config, db):
    """Two limiters (two processes) and bursts of concurrent requests: at most N admitted in all."""
    first, client1, batcher1 = await _limiter(base_config, "1000/1h")
    second, client2, batcher2 = await _limiter(base_config, "1000/1h")
    try:
        results = []
        for _ in range(30):
            results += await asyncio.gather(*(limiter.check("10.0.0.2") for limiter in (first, second)
                                              for _ in range(25)))
        assert sum(d.allowed for d in results) <= 1000
        assert sum(d.allowed for d in results) >= 1000 - 2 * 10 * 4  # shares given up: a few per limiter
    finally:
        for batcher, client in ((batcher1, client1), (batcher2, client2)):
            batcher.close()
            await client.aclose()


async def test_concurrent_requests_of_one_client_wait_for_one_share(base_config, db):
    """100 requests at once (a load tool's connections from one address): a handful of decisions in Redis,
    not one per request."""
    limiter, client, batcher = await _limiter(base_config, "1000000/1m")
    try:
        for _ in range(3):
            decisions = await asyncio.gather(*(limiter.check("10.0.0.5") for _ in range(100)))
            assert all(d.allowed for d in decisions)
        assert batcher.calls <= 12
    finally:
        batcher.close()
        await client.aclose()


async def test_waiters_for_a_refused_share_are_refused_with_it(base_config, db):
    limiter, client, batcher = await _limiter(base_config, "200/1h")  # shares of up to 2
    try:
        decisions = await asyncio.gather(*(limiter.check("10.0.0.6") for _ in range(260)))
        assert sum(d.allowed for d in decisions) in (198, 199, 200)
        refused = [d for d in decisions if not d.allowed]
        assert all(d.retry_after >= 1 and d.fields["RateLimit"].startswith('"default";r=0;') for d in refused)
        assert batcher.calls < 200  # the refused waited for a decision instead of each asking Redis
    finally:
        batcher.close()
        await client.aclose()


async def test_ordinary_limits_are_decided_one_request_at_a_time(base_config, db):
    limiter, client, batcher = await _limiter(base_config, "100/15m")  # the default policy
    assert limiter.share_cap < 2
    try:
        for _ in range(20):
            await limiter.check("10.0.0.3")
        assert batcher.batches == 20 and not limiter.shares
    finally:
        batcher.close()
        await client.aclose()


async def test_an_unused_share_is_given_up_and_halved(base_config, db, monkeypatch):
    from server import ratelimit
    limiter, client, batcher = await _limiter(base_config, "100000/1h")
    try:
        for _ in range(10):
            await limiter.check("10.0.0.4")
        share = limiter.shares["10.0.0.4"]
        assert share.size > 2
        size, clock = share.size, ratelimit.time.monotonic() + 1  # later than any share lasts
        monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock)
        share.units = 5
        decision = await limiter.check("10.0.0.4")
        assert decision.allowed and limiter.shares["10.0.0.4"].size in (size // 2, size)
    finally:
        batcher.close()
        await client.aclose()


async def test_a_share_never_reports_more_than_the_quota_left(base_config, db):
    """Once the client's time in Redis is past, the share's fields say the whole quota and no wait:
    r is at most q, and t is 0."""
    from server.ratelimit import Share
    limiter, client, batcher = await _limiter(base_config, "100000/1h")
    try:
        share = Share()
        now = 1000.0
        share.units, share.tat = 3, int(now * 1_000_000) - 10 * limiter.default.interval
        fields = limiter._share_fields(share, now)  # noqa: SLF001
        state = dict(http_sf.parse(fields["RateLimit"].encode(), tltype="list"))
        assert state == {"default": {"r": 100000, "t": 0}}
    finally:
        batcher.close()
        await client.aclose()


class _Connection:
    """What the limiter reads of server/protocol.py's Connection."""

    client_key = None


class _Request:
    def __init__(self, connection, remote: str, forwarded: str | None = None) -> None:
        self.protocol, self.remote = connection, remote
        self.headers = CIMultiDict({"X-Forwarded-For": forwarded} if forwarded else {})


async def test_the_client_is_worked_out_once_per_connection_unless_proxies_are_trusted(base_config, db):
    limiter, client, batcher = await _limiter(base_config, "100000/1h")
    proxied, client2, batcher2 = await _limiter(base_config, "100000/1h", trusted_proxies="10.0.0.0/8")
    try:
        connection = _Connection()
        assert limiter.client_of(_Request(connection, "::ffff:10.1.2.3")) == "10.1.2.3"
        assert connection.client_key == "10.1.2.3"
        # Later requests of the connection take the kept key.
        assert limiter.client_of(_Request(connection, "::ffff:10.1.2.3", "198.51.100.9")) == "10.1.2.3"
        # Behind a trusted proxy each request names its client, and nothing is kept.
        connection = _Connection()
        assert proxied.client_of(_Request(connection, "10.0.0.1", "198.51.100.7")) == "198.51.100.7"
        assert proxied.client_of(_Request(connection, "10.0.0.1", "198.51.100.8")) == "198.51.100.8"
        assert connection.client_key is None
    finally:
        for batcher_, client_ in ((batcher, client), (batcher2, client2)):
            batcher_.close()
            await client_.aclose()
