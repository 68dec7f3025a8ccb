"""Response cache in Redis for public reads: versioned keys, one rebuild per key per process, strong ETags.

Coherence by versioned keys, not by deletes: an entry's key ends with the current versions of what it
shows (`cv:post:7`, `cv:posts`, `cv:users`, and a global `cv:epoch`), read and used in one Lua call. A
write bumps the versions it touches after its commit and before it answers, so the very next read on
any instance computes a new key and misses. Deletes would have to enumerate every list page, filter
and cursor that shows a changed post; a version bump reaches them all at once, and the orphaned entries
simply expire.

If a bump cannot reach Redis, the process bumps the epoch as soon as Redis answers again (retrying in
the background), which retires every entry: nothing stale outlives an outage by more than that.

Each process also holds a copy of the entries it served last (HELD_BYTES at most). The lookup still asks
Redis every time, with the copy's key and ETag: when the entry in Redis is that very one, Redis answers
`1` instead of the body, and the copy is served. Coherence and lifetimes stay Redis's; only the body of
a hit no longer comes over the connection each time.

A view can change faster than it is read again (under a steady stream of comments every list page is
retired before its next reader comes), or be read too seldom to be read again while it lives; each read
then pays a lookup and a store besides the query. Each process therefore counts, per policy, the hits
and the misses of its lookups (Uptake); while the misses outnumber the hits by more than MISSES_PER_HIT,
the policy's reads go straight to PostgreSQL, as with the cache off, but for one in SAMPLE, which goes
on measuring. Reading PostgreSQL is always fresh, so this changes only what a read costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

from aiohttp import web
from xxhash import xxh3_128_hexdigest

from .breaker import RedisUnavailable
from .db import CONFIG
from .redisdb import REDIS, REDIS_BREAKER, REDIS_SCRIPTS

log = logging.getLogger("server.cache")

# KEYS: the version keys; ARGV[1]: the entry's key without versions; ARGV[2], ARGV[3]: the key and ETag
# of the copy the caller holds, or ''. Returns {key, 1} when that copy is the entry, else {key, entry or false}.
LOOKUP = """
local versions = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do versions[i] = versions[i] or '0' end
local key = ARGV[1] .. '@' .. table.concat(versions, '.')
if key == ARGV[2] and redis.call('GETRANGE', key, 0, 25) == ARGV[3] then return {key, 1} end
return {key, redis.call('GET', key)}
"""
# KEYS: version keys to advance; ARGV[1]: their time to live.
BUMP = """
for i = 1, #KEYS do
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 0
"""
# KEYS[1]: an entry's key; ARGV: its value and time to live.
STORE = "return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])"
EPOCH = "cv:epoch"
ETAG_LENGTH = 26  # '"' + 24 hex digits + '"', stored in front of the body
BUILT_GRACE = 1.0  # seconds a finished build still answers this process's late misses
HELD_BYTES = 32 * 2**20  # bodies of the entries this process served last, kept to spare Redis sending them
UPTAKE_WINDOW = 64  # lookups of a policy between two decisions to use the cache for it or not
MISSES_PER_HIT = 3  # a policy skips the cache while its lookups miss more than this many times per hit
SAMPLE = 8  # while a policy skips the cache, one read in SAMPLE still goes through it


def etag_tag(body: bytes) -> str:
    """A strong ETag: 96 bits of the body's XXH3-128 (xxhash). Not a secret, only a name for these bytes,
    so a fast non-cryptographic hash does: BLAKE2b took 1.9 µs for 2 KB and 15 µs for 20 KB, XXH3 takes
    0.1-0.2 µs. The length is the one entries stored by earlier versions have (ETAG_LENGTH)."""
    return '"' + xxh3_128_hexdigest(body)[:24] + '"'


def etag_of(body: bytes) -> bytes:
    """etag_tag() as stored in front of a cached body."""
    return etag_tag(body).encode()


def matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): `W/` prefixes are ignored; `*` matches."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def respond(request: web.Request, etag: bytes, body: bytes) -> web.Response:
    """200 with the body, or 304 with only the ETag when the client already holds it."""
    tag = etag.decode()
    if matches(request.headers.get("If-None-Match"), tag):
        return web.Response(status=304, headers={"ETag": tag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": tag})


class Uptake:
    """Whether a policy's reads are worth a lookup in Redis, judged from its last UPTAKE_WINDOW lookups:
    not while the misses outnumber the hits (and waits for this process's own rebuilds) by more than
    MISSES_PER_HIT. While skipping, one read in SAMPLE still looks up, and those decide when to stop."""

    __slots__ = ("hits", "lookups", "skipping", "passed")

    def __init__(self) -> None:
        self.hits = self.lookups = self.passed = 0
        self.skipping = False

    def consult(self) -> bool:
        """True when this read goes through the cache."""
        if not self.skipping:
            return True
        self.passed += 1
        return self.passed % SAMPLE == 0

    def note(self, hit: bool) -> None:
        self.hits += hit
        self.lookups += 1
        if self.lookups == UPTAKE_WINDOW:
            self.skipping = self.lookups - self.hits > MISSES_PER_HIT * self.hits
            self.hits = self.lookups = 0


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a public GET route is cached: a name, what it shows, and when an answer is for one caller only."""

    name: str
    depends: Callable[[web.Request], list[str]]
    personal: Callable[[web.Request], bool] = lambda request: False


class Cache:
    def __init__(self, client, breaker, scripts, ttl: int, enabled: bool) -> None:
        self.client, self.breaker, self.scripts = client, breaker, scripts
        self.ttl = ttl
        # Versions outlive every entry made with them, so a version that expired and restarts at 0
        # cannot bring an old entry back.
        self.version_ttl = 2 * ttl + 60
        self.enabled = enabled
        # All three go through the script batcher: a write's bump and a rebuilt entry share their loop
        # turn's round trip with the rate limiter's decisions and the other lookups.
        self.lookup_script = client.register_script(LOOKUP)
        self.bump_script = client.register_script(BUMP)
        self.store_script = client.register_script(STORE)
        self._building: dict[bytes, asyncio.Future] = {}
        # Entry key without versions -> key, ETag, body; oldest first. An OrderedDict: forgetting the oldest
        # of a plain dict (`next(iter(d))`) walks past every slot already emptied at its front, 5.1 µs per
        # store at 10,000 copies against 0.5 µs for popitem(last=False) (a loop of 200,000 stores).
        self._held: OrderedDict[str, tuple[bytes, bytes, bytes]] = OrderedDict()
        self._held_bytes = 0
        self._epoch_task: asyncio.Task | None = None
        self._uptake: defaultdict[str, Uptake] = defaultdict(Uptake)  # policy name -> its lookups' yield
        # Counters for the metrics endpoint.
        self.hits = self.misses = self.rebuilds = self.waits = self.bypasses = self.skips = 0

    async def get(self, request: web.Request, policy: Policy, handler) -> web.Response:
        uptake = self._uptake[policy.name]
        if not uptake.consult():
            self.skips += 1
            return with_etag(request, await handler(request))
        base = _entry_key(request, policy)
        versions = [EPOCH] + [f"cv:{d}" for d in policy.depends(request)]
        held = self._held.get(base)
        try:
            key, entry = await self.scripts.run(
                self.lookup_script, versions, [base, held[0], held[1]] if held else [base, b"", b""])
        except RedisUnavailable:
            self.bypasses += 1
            return with_etag(request, await handler(request))
        if entry == 1:  # the copy held here is the entry
            self.hits += 1
            uptake.note(True)
            return respond(request, held[1], held[2])
        if entry:
            self.hits += 1
            uptake.note(True)
            etag, body = entry[:ETAG_LENGTH], entry[ETAG_LENGTH:]
            self._hold(base, key, etag, body)
            return respond(request, etag, body)
        self.misses += 1
        if (building := self._building.get(key)) is not None:
            # Someone in this process is building (or has just built) this entry: take theirs.
            self.waits += 1
            uptake.note(True)
            built = await asyncio.shield(building)
            if built is not None:
                return respond(request, *built)
            return with_etag(request, await handler(request))
        uptake.note(False)
        return await self._build(request, handler, base, key)

    def _hold(self, base: str, key: bytes, etag: bytes, body: bytes) -> None:
        """Keep a copy of an entry, forgetting the oldest copies beyond HELD_BYTES."""
        if (old := self._held.pop(base, None)) is not None:
            self._held_bytes -= len(old[2])
        self._held[base] = (key, etag, body)
        self._held_bytes += len(body)
        while self._held_bytes > HELD_BYTES:
            self._held_bytes -= len(self._held.popitem(last=False)[1][2])

    async def _build(self, request: web.Request, handler, base: str, key: bytes) -> web.Response:
        future = self._building[key] = asyncio.get_running_loop().create_future()
        built = None
        try:
            self.rebuilds += 1
            response = await handler(request)
            if response.status != 200 or not isinstance(response.body, bytes):
                return with_etag(request, response)
            built = (etag_of(response.body), response.body)
            try:
                await self.scripts.run(self.store_script, [key], [built[0] + built[1], self.ttl])
            except RedisUnavailable:
                pass  # answered all the same; the next request tries again
            self._hold(base, key, *built)
            return respond(request, *built)
        finally:
            future.set_result(built)
            # Kept a moment longer: lookups sent before the entry reached Redis may still come back as
            # misses, and they take this result instead of building again. The key holds the versions,
            # so the result cannot be stale for it.
            asyncio.get_running_loop().call_later(BUILT_GRACE, self._building.pop, key, None)

    async def bump(self, *depends: str) -> None:
        """Retire every entry that shows one of `depends`; called after the commit, before the answer."""
        if not self.enabled:
            return
        try:
            await self.scripts.run(self.bump_script, [f"cv:{d}" for d in depends], [self.version_ttl])
        except RedisUnavailable:
            log.warning("cache versions not bumped (%s): every entry is retired once Redis answers",
                        ", ".join(depends))
            if self._epoch_task is None or self._epoch_task.done():
                self._epoch_task = asyncio.create_task(self._bump_epoch())

    async def _bump_epoch(self) -> None:
        while True:
            try:
                await self.breaker.call(self.client.incr, EPOCH)
                log.info("cache epoch bumped: entries made before the Redis outage are retired")
                return
            except RedisUnavailable:
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._epoch_task is not None:
            self._epoch_task.cancel()


def _entry_key(request: web.Request, policy: Policy) -> str:
    """The route's name, path values and canonical query; long queries are hashed to keep keys short.
    Without a query string nothing is parsed: parsing an empty one took 3 % of a process's time under
    cached `post` reads (py-spy, perf/README.md)."""
    query = request.query_string
    if query:
        query = urlencode(sorted(request.query.items()))
        if len(query) > 200:
            query = "#" + hashlib.blake2b(query.encode(), digest_size=16).hexdigest()
    return f"c:{policy.name}:{':'.join(request.match_info.values())}?{query}"


def with_etag(request: web.Request, response: web.Response) -> web.Response:
    """An uncached answer gets the same ETag and 304 treatment as a cached one."""
    body = response.body
    if not isinstance(body, bytes) or response.status != 200:
        return response
    tag = etag_tag(body)
    if (given := request.headers.get("If-None-Match")) is not None and matches(given, tag):
        return web.Response(status=304, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return response


CACHE = web.AppKey("cache", Cache)


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[CACHE] = Cache(app[REDIS], app[REDIS_BREAKER], app[REDIS_SCRIPTS], config.cache_ttl, config.cache_enabled)
    yield
    await app[CACHE].close()


async def invalidate(request: web.Request, *depends: str) -> None:
    """After a write's commit: every cached view of `depends` is retired, on every instance."""
    await request.app[CACHE].bump(*depends)

