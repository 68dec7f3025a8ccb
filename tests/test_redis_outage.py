"""Redis going away mid-run: answers keep coming, limits hold per process, no request waits on Redis,
and shared limits come back within seconds of Redis returning, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest
import redis.asyncio as redis

from tests.test_ratelimit import limited_app
from server.breaker import Breaker, RedisUnavailable
from server.embedded import EmbeddedRedis
from server.ratelimit import LIMITER

N = 5
SLOW = 0.5  # seconds: generous against REDIS_TIMEOUT 0.25 on a busy two-core machine


async def timed_get(client, path="/api/ping"):
    began = time.monotonic()
    response = await client.get(path)
    await response.read()
    return response, time.monotonic() - began


async def statuses(clients, count):
    """`count` sequential requests, alternating over `clients`; every one fast and carrying the fields."""
    out = []
    for i in range(count):
        response, took = await timed_get(clients[i % len(clients)])
        assert took < SLOW, f"request {i} took {took:.3f} s"
        assert response.status < 500 and "RateLimit" in response.headers
        out.append(response.status)
    return out


async def test_redis_stopped_mid_run_then_restarted(aiohttp_client, make_config, db, servers):
    first = servers()
    config = make_config(redis_url=first.url, rate_limit=f"{N}/1h", redis_timeout=0.25, redis_breaker_reset=0.5)
    a = await aiohttp_client(limited_app(config))
    b = await aiohttp_client(limited_app(config))
    assert await statuses([a, b], N + 1) == [200] * N + [429]  # one shared budget

    first.stop()
    # Each process now limits on its own, from a fresh budget: N each, then 429s; never a 5xx, never slow.
    assert await statuses([a], N + 2) == [200] * N + [429] * 2
    assert await statuses([b], N + 2) == [200] * N + [429] * 2
    burst = await asyncio.gather(*(timed_get(a) for _ in range(20)))
    assert all(r.status == 429 and took < SLOW for r, took in burst)
    assert a.app[LIMITER].breaker.state == "open"

    second = servers(port=first.port)  # Redis is back, empty (no snapshot)
    began = time.monotonic()
    probe = redis.Redis.from_url(second.url)
    try:
        while not await probe.exists("rl:default:127.0.0.1"):
            assert time.monotonic() - began < 3, "the limiter did not return to Redis within 3 s"
            await statuses([a], 1)
            await asyncio.sleep(0.05)
        # Shared limits again, on both instances.
        await probe.flushdb()
        assert await statuses([a, b], N + 1) == [200] * N + [429]
        assert a.app[LIMITER].breaker.state == b.app[LIMITER].breaker.state == "closed"
    finally:
        await probe.aclose()


async def test_a_frozen_redis_costs_each_request_at_most_the_timeout(aiohttp_client, make_config, db, servers):
    """SIGSTOP: connections stay open and nothing answers, the worst case for a client without deadlines."""
    frozen = servers()
    config = make_config(redis_url=frozen.url, rate_limit="100/1h", redis_timeout=0.25, redis_breaker_reset=0.5)
    client = await aiohttp_client(limited_app(config))
    limiter = client.app[LIMITER]
    assert await statuses([client], 2) == [200, 200]  # pooled connections exist
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        # Requests in flight together when Redis freezes, then more once the breaker has opened.
        burst = await asyncio.gather(*(timed_get(client) for _ in range(10)))
        assert all(r.status == 200 and took < SLOW for r, took in burst), [took for _, took in burst]
        assert await statuses([client], 10) == [200] * 10
        assert limiter.breaker.state == "open"
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    began = time.monotonic()
    while True:
        fallbacks = limiter.fallbacks
        await statuses([client], 1)
        if limiter.fallbacks == fallbacks:  # decided by Redis
            break
        assert time.monotonic() - began < 3, "the limiter did not return to Redis within 3 s"
        await asyncio.sleep(0.05)
    assert limiter.breaker.state == "closed"


async def test_scripts_flushed_by_redis_are_loaded_again(aiohttp_client, make_config, db, base_config):
    client = await aiohttp_client(limited_app(make_config(rate_limit=f"{N}/1h")))
    assert (await client.get("/api/ping")).headers["RateLimit"] == f'"default";r={N - 1};t=720'
    r = redis.Redis.from_url(base_config.redis_url)
    await r.script_flush()
    await r.aclose()
    assert (await client.get("/api/ping")).headers["RateLimit"] == f'"default";r={N - 2};t=1440'
    assert client.app[LIMITER].fallbacks == 0


async def test_redis_refusing_writes_degrades_like_an_outage(aiohttp_client, make_config, db, servers):
    full = servers()
    client = await aiohttp_client(limited_app(make_config(redis_url=full.url, rate_limit=f"{N}/1h")))
    r = redis.Redis.from_url(full.url)
    await r.config_set("maxmemory", 1)  # every write is refused with OOM from now on
    try:
        assert await statuses([client], N + 1) == [200] * N + [429]
        assert client.app[LIMITER].fallbacks >= 1
    finally:
        await r.aclose()


# --- the breaker on its own, with a clock of the test's ----------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def ok():
    return "ok"


async def refused():
    raise ConnectionRefusedError()


async def hangs():
    await asyncio.sleep(10)


async def test_breaker_opens_after_consecutive_failures_and_probes_once():
    clock = Clock()
    breaker = Breaker(timeout=0.05, failures=3, reset=2.0, clock=clock)
    for fn in (refused, refused, ok, refused, refused):  # a success resets the count
        with pytest.raises(RedisUnavailable) if fn is refused else contextlib.nullcontext():
            await breaker.call(fn)
    assert breaker.state == "closed"
    with pytest.raises(RedisUnavailable):
        await breaker.call(hangs)  # the deadline counts as a failure: the third in a row
    assert breaker.state == "open" and breaker.opened_total == 1
    called = []

    async def spy():
        called.append(1)
        return "ok"

    clock.now = 1.9
    with pytest.raises(RedisUnavailable):
        await breaker.call(spy)
    assert called == [] and breaker.rejected_total == 1
    clock.now = 2.0
    with pytest.raises(RedisUnavailable):
        await breaker.call(refused)  # the probe fails: open for another `reset`
    clock.now = 3.9
    with pytest.raises(RedisUnavailable):
        await breaker.call(spy)
    clock.now = 4.0
    assert await breaker.call(spy) == "ok" and called == [1]
    assert breaker.state == "closed" and breaker.opened_total == 1


async def test_breaker_lets_one_probe_through_and_frees_it_when_cancelled():
    clock = Clock()
    breaker = Breaker(timeout=5, failures=1, reset=1.0, clock=clock)
    with pytest.raises(RedisUnavailable):
        await breaker.call(refused)
    clock.now = 1.0
    probe = asyncio.ensure_future(breaker.call(hangs))
    await asyncio.sleep(0)
    assert breaker.state == "half-open"
    with pytest.raises(RedisUnavailable):
        await breaker.call(ok)  # while the probe is out, everyone else degrades at once
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
