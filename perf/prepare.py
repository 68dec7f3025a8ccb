"""Before a measurement: which routes exist, the data ranges, cursors and access tokens, as files and env."""

from __future__ import annotations

import concurrent.futures
import json
import math
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from server.seed import PASSWORD

from .scenarios import Scenario

PAGE_LIMIT = 20          # the default page size the list scenarios ask for
MAX_DEPTH = 10_000       # page × limit may reach this (API.md)
CURSOR_PAGES = 100       # cursors harvested by one walk of 100-item pages: up to 10,000 posts deep
TOKENS = 50              # seeded users logged in for the authenticated scenarios


@dataclass
class Data:
    posts: int
    users: int
    tags: list[str]
    seed: int = 1
    cursors: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, min(math.ceil(self.posts / PAGE_LIMIT), MAX_DEPTH // PAGE_LIMIT))

    def write(self, folder: Path, nonce: str) -> dict[str, str]:
        """The files and variables the wrk and autocannon scripts read."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in (("tags.txt", self.tags), ("cursors.txt", self.cursors), ("tokens.txt", self.tokens)):
            (folder / name).write_text("".join(f"{v}\n" for v in values))
        (folder / "tokens.txt").chmod(0o600)
        return {"PERF_POSTS": str(self.posts), "PERF_USERS": str(self.users), "PERF_PAGES": str(self.pages),
                "PERF_SEED": str(self.seed), "PERF_NONCE": nonce, "PERF_PASSWORD": PASSWORD,
                "PERF_DATA": str(folder)}


def request(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict | None]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def missing_routes(base: str, scenario: Scenario, data: Data) -> list[str]:
    """The probes of `scenario` that no route answers: a 404 "No such route" or a 405."""
    missing = []
    for probe in scenario.probes:
        method, path = probe.split(" ", 1)
        path = path.replace("{tag}", data.tags[0] if data.tags else "none")
        status, body = request(method, base + path, {} if method == "POST" else None)
        message = ((body or {}).get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        if status == 405 or (status == 404 and message == "No such route"):
            missing.append(probe)
    return missing


def discover(base: str, posts: int | None, users: int | None, seed: int) -> Data:
    """Ranges of a running target not started by us, from the API (flags override what it cannot tell)."""
    status, body = request("GET", f"{base}/api/posts?limit=1")
    if posts is None:
        posts = body["data"][0]["id"] if status == 200 and body and body.get("data") else 1
    status, body = request("GET", f"{base}/api/tags?limit=100")
    tags = [t["name"] for t in body["data"]] if status == 200 and body else []
    if users is None:
        status, body = request("GET", f"{base}/api/users?limit=1")
        users = body["meta"]["total"] if status == 200 and body else max(1, posts // 10)
    return Data(posts=posts, users=users, tags=tags, seed=seed)


def harvest_cursors(base: str, pages: int = CURSOR_PAGES) -> list[str]:
    """Walk nextCursor over the newest posts; the scenarios then ask for any of these positions."""
    cursors, url = [], f"{base}/api/posts?limit=100"
    for _ in range(pages):
        status, body = request("GET", url)
        cursor = (body or {}).get("meta", {}).get("nextCursor") if status == 200 else None
        if not cursor:
            break
        cursors.append(cursor)
        url = f"{base}/api/posts?limit=100&cursor={cursor}"
    return cursors


def mint_tokens(base: str, users: int, count: int = TOKENS) -> list[str]:
    """Log seeded users in before the run (never inside it); empty when login is not there."""
    def login(user_id: int) -> str | None:
        status, body = request("POST", f"{base}/api/auth/login",
                               {"email": f"user{user_id}@example.com", "password": PASSWORD})
        return body["data"]["accessToken"] if status == 200 else None

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        tokens = list(pool.map(login, range(1, min(users, count) + 1)))
    return [t for t in tokens if t]


def nonce() -> str:
    return secrets.token_hex(3)
