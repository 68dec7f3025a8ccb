"""The scenarios: one wrk script and one autocannon script each, under the same name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                # read | write | hash | mixed
    probes: tuple[str, ...]  # "METHOD path" requests whose routes must exist for the scenario to run
    tokens: bool = False     # needs access tokens minted before the run
    needs: str = ""          # data it needs: "tags" or "cursors"
    # A probe of the request path's fixed cost rather than one of the perf issue's reads: no query, or
    # the cheapest one. Its ratio to the baseline is reported beside the reads, not judged against 0.85×.
    probe: bool = False
    # With the cache on, its req/s is judged against the baseline's (≥ 3×): the baseline runs beside it in
    # the cache-on pass too.
    cache_judged: bool = False

    @property
    def hashing(self) -> bool:
        """Its cost is a password hash by design: exempt from the throughput and latency SLA."""
        return self.kind == "hash"

    @property
    def read(self) -> bool:
        return self.kind == "read"

    @property
    def open_loop(self) -> bool:
        """Also run at a fixed offered rate: reads and the mixed workload."""
        return self.kind in ("read", "mixed")

    def script(self, tool: str) -> Path:
        return HERE / ("wrk" if tool == "wrk" else "autocannon") / f"{self.name}.{'lua' if tool == 'wrk' else 'js'}"


READS = ("GET /api/posts/1", "GET /api/posts", "GET /api/posts?tag={tag}", "GET /api/users/1/posts", "GET /api/tags")
SCENARIOS = {s.name: s for s in [
    Scenario("health", "read", ("GET /healthz",), probe=True),
    Scenario("user", "read", ("GET /api/users/1",), probe=True),
    Scenario("post", "read", ("GET /api/posts/1",), cache_judged=True),
    Scenario("list", "read", ("GET /api/posts",), cache_judged=True),
    Scenario("list-page", "read", ("GET /api/posts?page=2",)),
    Scenario("list-cursor", "read", ("GET /api/posts",), needs="cursors"),
    Scenario("list-tag", "read", ("GET /api/posts?tag={tag}",), needs="tags"),
    Scenario("user-posts", "read", ("GET /api/users/1/posts",)),
    Scenario("tags", "read", ("GET /api/tags",)),
    Scenario("login", "hash", ("POST /api/auth/login",)),
    Scenario("signup", "hash", ("POST /api/users",)),
    Scenario("comment", "write", ("POST /api/posts/1/comments",), tokens=True),
    Scenario("mixed", "mixed", READS + ("POST /api/posts/1/comments", "POST /api/posts"), tokens=True,
             needs="cursors"),
]}
