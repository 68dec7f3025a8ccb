"""Rate limiting on /api/: the policies, the limiter, admit() and the RateLimit header fields.

Each decision is one atomic GCRA script in Redis (gcra.py), pipelined with the other decisions of the same
loop turn (redisbatch.py) behind the Redis breaker; while Redis is unavailable, the script's in-process
twin decides, per process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator
from typing import NamedTuple

import orjson
import redis.asyncio as redis
from aiohttp import web

from . import gcra
from .breaker import RedisUnavailable
from .clientip import ClientIp
from .config import Config, parse_networks, parse_rate
from .db import CONFIG
from .errors import RESPONSE_HEADERS, PayloadTooLarge, RateLimited
from .inputs import read_body
from .redisbatch import ScriptBatcher
from .redisdb import REDIS, REDIS_SCRIPTS

LOGIN_PATH = "/api/auth/login"


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    count: int  # N requests ...
    window: int  # ... per W seconds

    @classmethod
    def parse(cls, name: str, text: str) -> Policy:
        return cls(name, *parse_rate(text))

    @property
    def interval(self) -> int:
        """T: microseconds between requests at the sustained rate, rounded up (never more than N per W)."""
        return -(-self.window * 1_000_000 // self.count)

    @property
    def span(self) -> int:
        """B = N×T: how far ahead of now the theoretical arrival time may run; N requests at once fit."""
        return self.count * self.interval

    @property
    def field(self) -> str:
        return f'"{self.name}";q={self.count};w={self.window}'


# Shares: a client that sends many requests through one process has them admitted several at a time.
# One decision in Redis charges up to `want` of its requests at once (never more than fit, so the quota
# is never exceeded); the process then admits that many without asking again, for at most SHARE_SECONDS.
# A share's requests not sent in time are given up: the client was charged for them, at most 1 % of its
# quota each time (SHARE_PART). A share doubles while the client uses it up in time and halves when it
# does not; for N under 2 × SHARE_PART there are no shares, so ordinary limits are decided one by one.
# SHARE_MAX bounds a share for very large quotas: at 64, a process serving one client 3,000 requests a
# second asked Redis 47 times a second (an EVALSHA of about 55 µs in Redis, and a round trip here, per 64
# requests); at 1,024 it asked once per about 250 (the share swings between the powers of two on either
# side of what the client sends in 100 ms: by the rule above, 256 and 512 at 300 requests per 100 ms).
SHARE_SECONDS = 0.1
SHARE_MAX = 1024
SHARE_PART = 100
SHARES_KEPT = 10_000  # clients with a share per process, before expired shares are dropped


class Share:
    __slots__ = ("units", "expires", "tat", "size", "waiting")

    def __init__(self) -> None:
        self.units = 0  # requests admitted in Redis, not yet sent
        self.expires = 0.0  # monotonic seconds
        self.tat = 0  # the client's theoretical arrival time in Redis, as local monotonic µs
        self.size = 1  # the next share's `want`
        # While a request of this client fetches a share, the others wait for it here (each on a future of
        # its own, so a waiter's cancellation touches no one else); None when no fetch is in flight.
        self.waiting: list[asyncio.Future] | None = None


class Decision(NamedTuple):
    allowed: bool
    retry_after: int  # whole seconds, when refused
    fields: dict[str, str]  # RateLimit-Policy and RateLimit


def _seconds(micros: int) -> int:
    return -(-micros // 1_000_000)


class Limiter:
    def __init__(self, config: Config, client: redis.Redis, batcher: ScriptBatcher) -> None:
        self.enabled = config.rate_limit_enabled
        self.default = Policy.parse("default", config.rate_limit)
        self.login = Policy.parse("login", config.rate_limit_login)
        self.client_ip = ClientIp(parse_networks(config.trusted_proxies))
        self.breaker = batcher.breaker
        self.script = client.register_script(gcra.LUA)  # hashes locally; loaded on the first NOSCRIPT
        self.batcher = batcher
        self.local = gcra.LocalGcra(config.rate_limit_fallback_size)
        # Counters for the metrics endpoint.
        self.fallbacks = 0  # decisions taken in-process because Redis was unavailable
        self.refused = 0
        # The per-request work is one EVALSHA: its arguments are built once here.
        default, login = (self.default.interval, self.default.span), (self.login.interval, self.login.span)
        self._default_args = ("", *default)
        self._login_args = {2: ("", *default, *login), 3: ("", *default, *login, *login)}
        self._default_policy = self.default.field
        self._interval, self._span = default  # read per request: the properties compute them
        self.share_cap = min(SHARE_MAX, self.default.count // SHARE_PART)
        self.shares: dict[str, Share] = {}
        self._login_policy = f"{self.default.field}, {self.login.field}"

    async def charge(self, keys: list[str], args: tuple) -> list[int]:
        """One atomic decision over `keys` in Redis, or in this process when Redis is unavailable."""
        try:
            return await self.batcher.run(self.script, keys, args)
        except RedisUnavailable:
            self.fallbacks += 1
            return self.local(keys, args)

    async def check(self, client: str) -> Decision:
        """The default policy for one request of `client`: from its share when it has one, else in Redis."""
        keys = ["rl:default:" + client]
        if self.share_cap < 2:
            wait, remaining, reset = await self.charge(keys, self._default_args)
            return self._decision(wait, remaining, reset)
        share = self.shares.get(client)
        if share is None:
            if len(self.shares) >= SHARES_KEPT:
                self._prune(time.monotonic())
            share = self.shares[client] = Share()
        while True:
            if fields := self._take(share):
                return Decision(True, 1, fields)
            if share.waiting is None:
                return await self._fetch(share, keys)
            # Another request of this client is fetching a share: wait for it rather than ask Redis too.
            # A refusal applies to this request as well; after a grant, take a unit of it (or fetch anew).
            waiter = asyncio.get_running_loop().create_future()
            share.waiting.append(waiter)
            refused = await waiter
            if refused is not None:
                return refused

    def from_share(self, client: str) -> dict[str, str] | None:
        """The fields of one request of `client` admitted from its share, without a coroutine (a share's
        units are granted, never refused); None when it has none left (check() then decides)."""
        share = self.shares.get(client)
        return self._take(share) if share is not None else None

    def client_of(self, request: web.Request) -> str:
        """The key `request`'s client is limited by (server/clientip.py). Without trusted proxies it is the
        connection's peer, so it is worked out once per connection (server/protocol.py keeps it)."""
        if self.client_ip.trusted:  # X-Forwarded-For may change from one request to the next
            return self.client_ip.resolve(request.remote, request.headers)
        connection = request.protocol
        key = getattr(connection, "client_key", None)
        if key is None:
            key = self.client_ip.resolve(request.remote, request.headers)
            if hasattr(connection, "client_key"):
                connection.client_key = key
        return key

    def _take(self, share: Share) -> dict[str, str] | None:
        """A unit of the share while it lasts, as its fields; a share past its time is given up, and the
        next halved."""
        if share.units:
            now = time.monotonic()
            if now < share.expires:
                share.units -= 1
                return self._share_fields(share, now)
            share.units, share.size = 0, max(1, share.size // 2)  # given up: the client sent fewer
        return None

    async def _fetch(self, share: Share, keys: list[str]) -> Decision:
        """One decision in Redis for a share big enough for the requests waiting on it."""
        share.waiting = waiting = []
        refused = None
        try:
            wait, remaining, reset, granted = await self.charge(keys, (*self._default_args, share.size))
            if wait:
                refused = self._decision(wait, remaining, reset)
                return refused
            now = time.monotonic()
            used_up = share.expires > now or share.size == 1  # the last share went in time
            share.units, share.expires = granted - 1, now + SHARE_SECONDS
            share.tat = int(now * 1_000_000) + reset
            if used_up or len(waiting) >= share.size:
                share.size = min(self.share_cap, max(share.size * 2, len(waiting) + 1))
            return Decision(True, 1, self._share_fields(share, now))
        finally:
            share.waiting = None
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(refused)

    def _share_fields(self, share: Share, now: float) -> dict[str, str]:
        """The fields as if each request had been decided alone: the share's unsent requests are still
        the client's to send."""
        interval = self._interval
        reset = share.tat - share.units * interval - int(now * 1_000_000)
        if reset < 0:  # the client's time in Redis is past: the whole quota
            reset = 0
        remaining = (self._span - reset) // interval
        return {"RateLimit-Policy": self._default_policy,
                "RateLimit": f'"default";r={remaining if remaining > 0 else 0};t={_seconds(reset)}'}

    def _decision(self, wait: int, remaining: int, reset: int) -> Decision:
        fields = {"RateLimit-Policy": self._default_policy,
                  "RateLimit": f'"default";r={max(remaining, 0)};t={_seconds(reset)}'}
        return Decision(wait == 0, max(1, _seconds(wait)), fields)

    def _prune(self, now: float) -> None:
        for client in [c for c, share in self.shares.items() if now >= share.expires and share.waiting is None]:
            del self.shares[client]
        if len(self.shares) >= SHARES_KEPT:
            self.shares.clear()

    async def check_login(self, client: str, email: str | None) -> Decision:
        """The default policy, and the login policy per client and per email, in one decision."""
        keys = ["rl:default:" + client, "rl:login:ip:" + client]
        if email:  # hashed: no addresses in Redis, and a bounded key whatever the body holds
            keys.append("rl:login:email:" + hashlib.blake2b(email.encode(), digest_size=16).hexdigest())
        out = await self.charge(keys, self._login_args[len(keys)])
        # The login policy's state is its tighter key: the fewest remaining, the latest full reset.
        login_remaining, login_reset = min(out[3::2]), max(out[4::2])
        fields = {"RateLimit-Policy": self._login_policy,
                  "RateLimit": f'"default";r={max(out[1], 0)};t={_seconds(out[2])}, '
                               f'"login";r={max(login_remaining, 0)};t={_seconds(login_reset)}'}
        return Decision(out[0] == 0, max(1, _seconds(out[0])), fields)


LIMITER = web.AppKey("limiter", Limiter)


async def ratelimit_ctx(app: web.Application) -> AsyncIterator[None]:
    app[LIMITER] = Limiter(app[CONFIG], app[REDIS], app[REDIS_SCRIPTS])
    yield


async def _login_email(request: web.Request) -> tuple[str | None, PayloadTooLarge | None]:
    """The login body's email, read leniently (aiohttp keeps the bytes for the handler); or the error
    reading it raised (413), which must reach the client: a second read would see a truncated body."""
    if request.content_type != "application/json":
        return None, None
    try:
        raw = await read_body(request)
    except PayloadTooLarge as exc:
        return None, exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None  # the handler answers MALFORMED_JSON
    email = data.get("email") if isinstance(data, dict) else None
    if not isinstance(email, str) or not email.strip():
        return None, None  # the handler answers VALIDATION_ERROR
    return email.strip().lower(), None


ASK = object()  # admit_now(): the decision needs admit()


def admit_now(request: web.Request, limiter: Limiter | None) -> dict[str, str] | None | object:
    """admit() without a coroutine, for what a process decides alone: None outside /api/, with the limiter
    off or with none in the app; the fields of a unit of the client's share; else ASK: the decision needs
    Redis, and server/pipeline.py awaits admit(). Most requests of a busy client come from its share."""
    if limiter is None or not limiter.enabled or not request.path.startswith("/api/"):
        return None
    if not limiter.shares or request.path == LOGIN_PATH:
        return ASK
    fields = limiter.from_share(limiter.client_of(request))
    if fields is None:
        return ASK
    request[RESPONSE_HEADERS] = fields
    return fields


async def admit(request: web.Request) -> dict[str, str] | None:
    """Counts one /api/ request: its RateLimit fields, or RateLimited (429). None outside /api/ or with
    the limiter off. Run first by server/pipeline.py, whatever the answer will be.

    The pipeline renders errors raised here or later: the fields go in RESPONSE_HEADERS before the
    handler runs, so error answers (404s, 500s, this 429) carry them too.
    """
    limiter = request.app[LIMITER]
    if not limiter.enabled or not request.path.startswith("/api/"):
        return None
    client = limiter.client_of(request)
    body_error = None
    if request.path == LOGIN_PATH and request.method == "POST":
        email, body_error = await _login_email(request)
        decision = await limiter.check_login(client, email)
    else:
        fields = limiter.from_share(client)
        decision = Decision(True, 1, fields) if fields else await limiter.check(client)
    request[RESPONSE_HEADERS] = decision.fields
    if not decision.allowed:
        limiter.refused += 1
        raise RateLimited(headers={"Retry-After": str(decision.retry_after)})
    if body_error is not None:
        raise body_error
    return decision.fields
