"""/metrics: request counts and latencies by route template, live gauges, the collector hook, many processes."""

from __future__ import annotations

import socket
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.config import Config
from server.metrics import METRICS, prepare_multiprocess
from tests.conftest import sign_up
from tests.live import live_server
from tests.openapi_check import validate_response

HANG_UPS = 3  # of each kind per path


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(client) -> dict[tuple, float]:
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    return samples(await response.text())


def count(metrics: dict, route: str, status: str, method: str = "GET") -> float:
    return metrics.get(("http_requests_total", (("method", method), ("route", route), ("status", status))), 0)


async def test_requests_are_counted_by_route_template_and_status(client):
    user = await sign_up(client, "ann")
    for _ in range(3):
        assert (await client.get(f"/api/users/{user['id']}")).status == 200
    assert (await client.get("/api/users/424242")).status == 404
    assert (await client.get("/no/such/path/42")).status == 404
    assert (await client.put("/api/users")).status == 405
    metrics = await scrape(client)
    assert count(metrics, "/api/users/{id}", "200") == 3
    assert count(metrics, "/api/users/{id}", "404") == 1
    assert count(metrics, "/api/users", "201", "POST") == 1
    assert count(metrics, "unmatched", "404") == 1
    assert count(metrics, "unmatched", "405", "PUT") == 1
    assert not any("424242" in str(key) or "/no/such" in str(key) for key in metrics)  # never raw paths
    hist = ("http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/users/{id}")))
    assert metrics[hist] == 4
    bucket = ("http_request_duration_seconds_bucket", (("le", "+Inf"), ("method", "GET"), ("route", "/api/users/{id}")))
    assert metrics[bucket] == 4


def test_the_tally_gives_the_buckets_one_observe_at_a_time_would():
    """Durations on bucket bounds, between them and past the last: the same series as Histogram.observe()."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from server.metrics import BUCKETS, Metrics
    durations = [0.0, 0.0004, 0.001, 0.0010001, 0.003, 0.05, 0.05, 2.5, 9.99, 10.0, 10.5, 60.0]
    metrics = Metrics()
    for seconds in durations:
        metrics.observe("GET", "/api/x", 200, seconds)
    assert not samples(generate_latest(metrics.registry).decode()).get(
        ("http_requests_total", (("method", "GET"), ("route", "/api/x"), ("status", "200"))))  # tallied only
    metrics.flush()
    registry = CollectorRegistry()
    reference = Histogram("http_request_duration_seconds", "", ("method", "route"), registry=registry,
                          buckets=BUCKETS)
    for seconds in durations:
        reference.labels("GET", "/api/x").observe(seconds)
    ours, theirs = samples(generate_latest(metrics.registry).decode()), samples(generate_latest(registry).decode())
    duration_series = {k: v for k, v in ours.items() if k[0].startswith("http_request_duration_seconds")}
    assert duration_series == {k: v for k, v in theirs.items() if k[0].startswith("http_request_duration_seconds")}
    assert count(ours, "/api/x", "200") == len(durations)


async def test_odd_methods_share_one_label(client):
    response = await client.request("PROPFIND", "/api/users")
    metrics = await scrape(client)
    assert count(metrics, "unmatched", str(response.status), "other") == 1, response.status


async def test_live_gauges(client):
    metrics = await scrape(client)
    assert metrics[("http_requests_in_flight", ())] == 1  # the scrape itself
    assert metrics[("db_pool_size", ())] >= 1
    assert metrics[("db_pool_idle", ())] <= metrics[("db_pool_size", ())]
    assert metrics[("db_pool_waiters", ())] == 0
    assert metrics[("password_hash_in_use", ())] == 0
    assert metrics[("outbox_backlog", ())] == 0 and metrics[("outbox_dead_letters", ())] == 0


async def test_outbox_gauges(client, db):
    """No worker runs in the tests: sign-ups leave their user.created events waiting; one is made dead."""
    await sign_up(client, "ann")
    await sign_up(client, "bob")
    event = await db.fetchval("SELECT min(id) FROM outbox_events")
    await db.execute("UPDATE outbox_deliveries SET status = 'dead' WHERE event_id = $1", event)
    metrics = await scrape(client)
    assert metrics[("outbox_backlog", ())] == 1
    assert metrics[("outbox_dead_letters", ())] == 1
    assert metrics[("outbox_oldest_pending_age_seconds", ())] >= 0
    assert ("process_cpu_seconds_total", ()) in metrics


async def test_cache_counters(client):
    user = await sign_up(client, "ann")
    for _ in range(3):
        assert (await client.get(f"/api/users/{user['id']}")).status == 200
    metrics = await scrape(client)
    assert metrics[("cache_misses_total", ())] == 1 and metrics[("cache_rebuilds_total", ())] == 1
    assert metrics[("cache_hits_total", ())] == 2 and metrics[("cache_bypasses_total", ())] == 0
    assert metrics[("cache_skips_total", ())] == 0


async def test_rate_limit_rejections(aiohttp_client, make_config, db):
    client = await aiohttp_client(create_app(make_config(rate_limit="2/1m")), middlewares=(validate_response,))
    statuses = [(await client.get("/api/users/1")).status for _ in range(3)]
    assert statuses == [404, 404, 429]
    metrics = await scrape(client)  # not under /api/: not limited
    assert metrics[("rate_limit_rejections_total", ())] == 1
    assert metrics[("rate_limit_fallback_decisions_total", ())] == 0
    assert metrics[("redis_breaker_open", ())] == 0
    assert count(metrics, "/api/users/{id}", "429") == 1


async def test_collectors_registered_by_other_modules(aiohttp_client, config, db):
    """The hook the cache, rate limiter and outbox use: sync and async collectors, and a broken one."""
    app = create_app(config)
    metrics = app[METRICS]
    hits = metrics.counter("answers_total", "Answers from somewhere", ("route",))
    backlog = metrics.gauge("queue_backlog", "Items waiting", mode="mostrecent")
    calls = []

    async def outbox_stats():
        calls.append("outbox")
        backlog.set(7)

    def broken():
        raise RuntimeError("this collector is broken")

    metrics.register_collector(outbox_stats, shared=True)
    metrics.register_collector(broken)
    hits.labels("/api/posts").inc(2)
    client = await aiohttp_client(app, middlewares=(validate_response,))
    values = await scrape(client)
    assert values[("answers_total", (("route", "/api/posts"),))] == 2
    assert values[("queue_backlog", ())] == 7 and calls == ["outbox"]


async def test_metrics_can_be_switched_off(aiohttp_client, make_config, db):
    client = await aiohttp_client(create_app(make_config(metrics_enabled=False)))
    await client.get("/healthz")
    metrics = await scrape(client)
    assert not any(name == "http_requests_total" for name, _ in metrics)
    assert ("db_pool_size", ()) in metrics


def test_prepare_multiprocess(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert prepare_multiprocess(Config(workers=1)) is None
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored by monkeypatch after the call sets it
    assert prepare_multiprocess(Config(workers=4, prometheus_multiproc_dir=str(tmp_path))) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    import os
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.mark.slow
def test_serve_with_workers_counts_every_process(base_config, tmp_root):
    """Scenario: `serve --workers 3` on one port; a scrape lands on any process and must count them all."""
    others = set(Path(tempfile.gettempdir()).glob("blog-api-metrics-*"))  # of services running meanwhile
    with live_server(base_config, tmp_root / "workers", WORKERS="3", ACCESS_LOG="false") as server:
        for _ in range(12):  # a new connection each: the kernel spreads them over the processes
            _get(server.url + "/api/openapi.json")
        deadline = time.monotonic() + 5  # each process writes its tally out every second
        while count(samples(_get(server.url + "/metrics")), "/api/openapi.json", "200") < 12:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for _ in range(6):
            metrics = samples(_get(server.url + "/metrics"))
            assert count(metrics, "/api/openapi.json", "200") == 12
            assert metrics[("http_requests_in_flight", ())] >= 1
            assert ("process_cpu_seconds_total", ()) not in metrics  # per-process series make no sense summed
        folders = set(Path(tempfile.gettempdir()).glob("blog-api-metrics-*")) - others
        assert any(list(f.glob("counter_*.db")) for f in folders)
    assert not any(f.exists() for f in folders)  # removed when the last process ended


def test_a_client_that_hangs_up_before_its_body_is_read_is_counted_as_gone(base_config, tmp_root):
    """Scenario: clients close their connection with a request unanswered, as a load tool does when its run
    ends, having sent all of its body or half. aiohttp then fails the body's read even when the bytes had
    arrived. Each such request is counted under 499, like any request whose client left: none as a 503,
    and no dependency outage in the log."""
    bodies = {"/api/users": b'{"email": "gone@example.com", "username": "gone", "password": "long enough"}',
              "/api/auth/login": b'{"email": "gone@example.com", "password": "long enough"}'}
    with live_server(base_config, tmp_root / "gone", ACCESS_LOG="false") as server:
        port = int(server.url.rsplit(":", 1)[1])
        for path, body in bodies.items():
            for sent in (body, body[:len(body) // 2]) * HANG_UPS:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\n\r\n".encode() + sent)
                    if sent != body:
                        time.sleep(0.05)  # the handler is waiting for the rest
        deadline = time.monotonic() + 15
        while True:  # until every request is counted (one whose body was read in time is answered)
            metrics = samples(_get(server.url + "/metrics"))
            statuses = {path: {labels[2][1]: value for (name, labels), value in metrics.items()
                               if name == "http_requests_total" and labels[:2] == (("method", "POST"), ("route", path))}
                        for path in bodies}
            if all(sum(n.values()) == 2 * HANG_UPS for n in statuses.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        log = server.log()
    assert all(n.get("499") and not n.get("503") for n in statuses.values()), statuses
    assert "unavailable" not in log
