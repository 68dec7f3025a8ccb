"""A steady load of authenticated reads and writes, with a ledger of every acknowledged write.

Users sign up and log in, then requests start at a fixed rate whatever the answers (an open loop: an
outage does not slow the offered load down): posts and comments are created, and posts, lists and
comment pages are read. Every call is recorded with the moment its request was completely handed to the
socket (`sent`, from aiohttp's tracing) and its outcome; every 201 enters the ledger with the id and the
content, which `verify()` then looks up in PostgreSQL. The client never retries (aiohttp's one retry
of idempotent requests on a dropped keep-alive connection is turned off), so every failure counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import secrets
import time

import aiohttp
import asyncpg


@dataclasses.dataclass
class Call:
    kind: str
    start: float  # time.monotonic() when the request was issued
    sent: float | None = None  # when its last byte was written
    end: float | None = None
    status: int | None = None  # None: no HTTP answer (see error)
    error: str | None = None
    retry_after: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return (self.end or self.start) - self.start


class Ledger:
    def __init__(self) -> None:
        self.posts: dict[int, tuple[str, str]] = {}  # id -> (title, body)
        self.comments: dict[int, tuple[int, str]] = {}  # id -> (post id, body)

    async def verify(self, dsn: str) -> list[str]:
        """Every acknowledged post and comment, looked up in the database: what is missing or different."""
        conn = await asyncpg.connect(dsn)
        try:
            posts = {r["id"]: (r["title"], r["body"]) for r in await conn.fetch(
                "SELECT id, title, body FROM posts WHERE id = ANY($1::bigint[])", list(self.posts))}
            comments = {r["id"]: (r["post_id"], r["body"]) for r in await conn.fetch(
                "SELECT id, post_id, body FROM comments WHERE id = ANY($1::bigint[])", list(self.comments))}
        finally:
            await conn.close()
        return ([f"post {i}: {posts.get(i)!r} != {v!r}" for i, v in self.posts.items() if posts.get(i) != v]
                + [f"comment {i}: {comments.get(i)!r} != {v!r}" for i, v in self.comments.items() if comments.get(i) != v])


class Load:
    def __init__(self, url: str, *, rate: float, users: int = 4, write_share: float = 0.3,
                 connections: int = 32, timeout: float = 10.0, seed: int | None = None) -> None:
        self.url, self.rate, self.users_wanted, self.write_share = url, rate, users, write_share
        self.connections, self.timeout = connections, timeout
        self.rng = random.Random(seed)
        self.tag = secrets.token_hex(3)  # this run's names and contents
        self.calls: list[Call] = []
        self.ledger = Ledger()
        self.tokens: list[str] = []
        self.seq = itertools.count()
        self.session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()

    async def __aenter__(self) -> Load:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._on_sent)
        trace.on_request_chunk_sent.append(self._on_sent)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout), trace_configs=[trace])
        self.session._retry_connection = False  # count what the server dropped; no silent second try
        await self._sign_up()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
        await self.session.close()

    @staticmethod
    async def _on_sent(session, ctx, params) -> None:
        call = ctx.trace_request_ctx
        if isinstance(call, Call):
            call.sent = time.monotonic()

    async def _sign_up(self) -> None:
        async def one(i: int) -> str:
            name = f"load{self.tag}{i}"
            body = {"email": f"{name}@example.com", "username": name, "password": "correct horse"}
            async with self.session.post(self.url + "/api/users", json=body) as response:
                assert response.status == 201, await response.text()
            async with self.session.post(self.url + "/api/auth/login",
                                         json={"email": body["email"], "password": body["password"]}) as response:
                assert response.status == 200, await response.text()
                return (await response.json())["data"]["accessToken"]

        self.tokens = list(await asyncio.gather(*(one(i) for i in range(self.users_wanted))))
        for _ in range(2):  # something to read and comment on from the first request
            call = await self._call("post")
            assert call.ok, call

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
        if self._inflight:
            await asyncio.wait(self._inflight)

    async def run_for(self, seconds: float) -> None:
        self.start()
        await asyncio.sleep(seconds)
        await self.stop()

    async def _run(self) -> None:
        # Requests start on a fixed schedule (an open loop); a late tick starts what it owes at once.
        interval, next_at = 1 / self.rate, time.monotonic()
        while True:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._call(self._pick()))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _pick(self) -> str:
        if self.rng.random() < self.write_share:
            return "post" if self.rng.random() < 0.5 else "comment"
        return self.rng.choice(("read_post", "list_posts", "read_comments"))

    async def _call(self, kind: str) -> Call:
        call = Call(kind, time.monotonic())
        self.calls.append(call)
        token = self.rng.choice(self.tokens)
        headers = {"Authorization": f"Bearer {token}"}
        n = next(self.seq)
        post_id = self.rng.choice(list(self.ledger.posts)) if self.ledger.posts else None
        if kind == "post":
            title, body = f"title {self.tag} {n}", f"body {self.tag} {n} " + secrets.token_hex(8)
            method, path, json = "POST", "/api/posts", {"title": title, "body": body}
        elif kind == "comment":
            body = f"comment {self.tag} {n} " + secrets.token_hex(8)
            method, path, json = "POST", f"/api/posts/{post_id}/comments", {"body": body}
        else:
            method, json = "GET", None
            path = {"read_post": f"/api/posts/{post_id}", "list_posts": "/api/posts?limit=10",
                    "read_comments": f"/api/posts/{post_id}/comments?limit=10"}[kind]
        try:
            async with self.session.request(method, self.url + path, json=json, headers=headers,
                                            trace_request_ctx=call) as response:
                data = await response.json() if response.status == 201 else await response.read()
                call.status = response.status
                call.retry_after = "Retry-After" in response.headers
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            call.error = type(exc).__name__
        call.end = time.monotonic()
        if call.status == 201:
            created = data["data"]
            if kind == "post":
                self.ledger.posts[created["id"]] = (title, body)
            else:
                self.ledger.comments[created["id"]] = (post_id, body)
        return call

    # What the cases read off the record.

    def between(self, t0: float, t1: float) -> list[Call]:
        return [c for c in self.calls if t0 <= c.start < t1]

    def failures(self, calls: list[Call] | None = None) -> list[Call]:
        """Answers that are neither a 2xx nor a 503 with Retry-After, and requests with no answer."""
        return [c for c in (self.calls if calls is None else calls)
                if not (c.ok or (c.status == 503 and c.retry_after))]


def summary(calls: list[Call]) -> dict:
    statuses: dict[str, int] = {}
    for c in calls:
        key = str(c.status) if c.status is not None else c.error or "?"
        statuses[key] = statuses.get(key, 0) + 1
    return dict(sorted(statuses.items()))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]
