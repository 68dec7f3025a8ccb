"""The perf kit: tool output → figures → report table and JSON, the SLA verdict, comparisons, the baseline.

The canned outputs under tests/data/perf were captured from real 2-second runs against /healthz
(`wrk ... -s perf/wrk/health.lua`, `node perf/autocannon/health.js ...`, closed and open loop).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perf import report, tools
from perf.runner import Options, Run
from perf.scenarios import SCENARIOS

DATA = Path(__file__).resolve().parent / "data" / "perf"


def _canned(name: str) -> dict:
    return tools.parse((DATA / name).read_text())


def _entry(name: str, scenario="health", target="service", cache="on", mode="closed", rate=0, **changes) -> dict:
    entry = {"scenario": scenario, "target": target, "cache": cache, "mode": mode, "connections": 10,
             "rate": rate, **_canned(name)}
    for k, v in changes.items():
        if k in ("p95", "p99"):
            entry["latency_ms"] = {**entry["latency_ms"], k: v}
        else:
            entry[k] = v
    return entry


def test_wrk_output_becomes_the_common_figures():
    figures = _canned("wrk-health.txt")
    assert figures["tool"] == "wrk" and figures["requests"] == 20996 and figures["duration_s"] == 2.014
    assert figures["rps"] == pytest.approx(10427.49, abs=0.05)  # what wrk itself printed
    assert figures["latency_ms"] == {"p50": 0.441, "p75": 2.045, "p90": 3.651, "p95": 4.805, "p99": 10.647,
                                     "p99.9": 20.935, "p99.99": 22.878, "mean": 1.507, "max": 22.931}
    assert (figures["errors"], figures["non2xx"], figures["error_rate"]) == (0, 0, 0)


def test_autocannon_output_becomes_the_common_figures():
    closed, opened = _canned("autocannon-health.txt"), _canned("autocannon-health-open.txt")
    assert closed["requests"] == 30420 and closed["rps"] == 14985.2
    assert closed["latency_ms"]["p95"] == 0.958 and closed["latency_ms"]["max"] == 49.734
    # Open loop: the sum of the 10 staggered instances' own rates, each of which ran 2 or 3 s.
    assert opened["requests"] == 463 and opened["rps"] == 200.5 and opened["latency_ms"]["p99"] == 6.919


def test_wrk_gets_whole_seconds_however_a_measurement_is_sliced():
    """`--duration 10` beside the baseline gives slices of 10/3 s; wrk refuses `-d3.33333s` (it prints its
    usage and exits 1), so it gets whole seconds, at least one."""

    def duration(seconds: float) -> str:
        args = tools.command("wrk", SCENARIOS["post"], tools.Load("http://127.0.0.1:1", 100, seconds))
        return next(a for a in args if a.startswith("-d"))

    assert [duration(s) for s in (10 / 3, 30 / 3, 2.5, 0.4)] == ["-d3s", "-d10s", "-d2s", "-d1s"]


def test_a_line_without_figures_is_an_error():
    with pytest.raises(tools.ToolError, match="no PERF_RESULT"):
        tools.parse("Running 2s test @ http://127.0.0.1:1\nconnection refused\n")


def test_report_table_and_json(tmp_path):
    entries = [_entry("wrk-health.txt", cpu_us={"api": 91.4, "db": 0.0, "redis": 1.2, "tool": 31.6}),
               _entry("autocannon-health.txt",
                      cpu_us={"api": 91.4, "db": 210.2, "db_background": 13.6, "redis": 1.2, "tool": 31.6}),
               _entry("autocannon-health-open.txt", mode="open", rate=200),
               _entry("wrk-health.txt", target="baseline", cache=None, rps=20000.0)]
    body = {"meta": {"started": "2026-01-01T00:00:00+00:00", "scale": 10000, "workers": 2}, "entries": entries,
            "skipped": [{"scenario": "post", "target": "service", "reason": "route not available yet"}]}
    misses, regressions = report.finish(body, tmp_path)
    assert (misses, regressions) == (0, [])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["entries"][0]["ratio"] == pytest.approx(10427.5 / 20000, abs=0.001)
    assert saved["entries"][1]["ratio"] is None  # no autocannon baseline in this run
    md = (tmp_path / "report.md").read_text()
    assert "| health | wrk | service | 10,000 | on | closed | 10,428 | 0.44 | 4.80 | 10.6 | 22.9 | 0 | 0 | 0.52× req/s | 91 · 0 · 1 · 32 | ok |" in md
    assert "| health | autocannon | service | 10,000 | on | open 200/s | 200 | 0.14 | 4.34 | 6.92 | 14.9 | 0 | 0 |  |  | ok |" in md
    assert "| health | wrk | baseline | 10,000 |  | closed | 20,000 |" in md
    assert "| 14,985 | 0.48 | 0.96 | 5.12 | 49.7 | 0 | 0 |  | 91 · 210 (+14) · 1 · 32 | ok |" in md
    assert "- post on service: route not available yet" in md


def test_a_scale_check_judges_p95_growth_of_reads_measured_at_both_scales(tmp_path):
    """--scale-check: each read measured on the bigger data set is set against the same measurement on the
    first; the bigger one gets no ratio to the baseline, which ran on the first data set only."""
    small = [_entry("autocannon-health.txt", scenario="tags", cache="off", scale=10_000, p95=2.0),
             _entry("autocannon-health-open.txt", scenario="user", cache="off", mode="open", rate=200, scale=10_000,
                    p95=2.0),
             _entry("autocannon-health.txt", scenario="tags", target="baseline", cache=None, scale=10_000)]
    big = [_entry("autocannon-health.txt", scenario="tags", cache="off", scale=1_000_000, p95=2.9),
           _entry("autocannon-health-open.txt", scenario="user", cache="off", mode="open", rate=200,
                  scale=1_000_000, p95=3.1)]
    body = {"meta": {"started": "2026-01-01T00:00:00+00:00", "scale": 10_000, "scale_check": 1_000_000},
            "entries": small + big}
    report.finish(body, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["entries"][0]["ratio"] is not None and saved["entries"][3]["ratio"] is None
    goals = dict((text.split(" (")[0], ok) for text, ok in saved["goals"])
    assert goals["tags autocannon cache off closed loop: p95 at 1,000,000 posts ≤ 1.5× p95 at 10,000"] is True
    assert goals["user autocannon cache off open loop: p95 at 1,000,000 posts ≤ 1.5× p95 at 10,000"] is False
    md = (tmp_path / "report.md").read_text()
    assert "| tags | autocannon | service | 1,000,000 | off | closed |" in md
    assert "(2.00 → 3.10 ms, ×1.55)" in md


def test_the_issue_reads_are_judged_against_085_and_the_probes_only_shown(tmp_path):
    """Cache off, closed loop: each of the issue's reads needs 0.85× the baseline's req/s; `health` and
    `user` (probes of the fixed cost) have their ratio listed without a verdict."""
    entries = []
    for scenario, rps in (("tags", 8400.0), ("post", 8600.0), ("health", 7000.0), ("user", 7900.0)):
        entries += [_entry("wrk-health.txt", scenario=scenario, cache="off", rps=rps),
                    _entry("wrk-health.txt", scenario=scenario, target="baseline", cache=None, rps=10000.0)]
    body = {"meta": {"started": "2026-01-01T00:00:00+00:00", "scale": 10_000}, "entries": entries}
    report.finish(body, tmp_path)
    goals = dict(json.loads((tmp_path / "report.json").read_text())["goals"])
    assert goals["tags wrk cache off: ≥ 0.85× baseline req/s (0.84×)"] is False
    assert goals["post wrk cache off: ≥ 0.85× baseline req/s (0.86×)"] is True
    probes = [text for text, ok in goals.items() if ok is None]
    assert [p.split(":")[0] for p in probes] == ["health wrk cache off", "user wrk cache off"]
    md = (tmp_path / "report.md").read_text()
    assert "- [ ] tags wrk cache off" in md and "- health wrk cache off: 0.70× baseline req/s (a probe" in md


@pytest.mark.parametrize("changes, scenario, missed", [
    ({}, "health", []),
    ({"p95": 120.0}, "health", ["p95 120.0 ms ≥ 100 ms"]),
    ({"rps": 900.0}, "health", ["900 req/s ≤ 1000"]),
    ({"non2xx": 40, "error_rate": 40 / 33702}, "health", ["errors 0.12% ≥ 0.1%"]),
    ({"errors": 30, "error_rate": 30 / 20996}, "health", ["errors 0.14% ≥ 0.1%"]),
    ({"p95": 400.0, "rps": 90.0}, "login", []),  # the hash is the cost: exempt from throughput and latency
    ({"p95": 400.0, "rps": 90.0, "error_rate": 0.5}, "signup", ["errors 50.00% ≥ 0.1%"]),  # ... not from errors
])
def test_sla_verdicts(changes, scenario, missed):
    assert report.sla(_entry("wrk-health.txt", scenario=scenario, **changes)) == missed


def test_open_loop_that_cannot_deliver_the_rate_misses():
    entry = _entry("autocannon-health-open.txt", mode="open", rate=1000)
    assert report.sla(entry) == ["200 req/s delivered of 1000 offered"]


def _finish(tmp_path, entries, **options) -> int:
    run = Run(Options(results=tmp_path, **options))
    run.meta = {"started": "2026-01-01T00:00:00+00:00", "scale": 10000}
    run.entries = entries
    run.tmp.rmdir()
    return run.finish()


def test_the_run_exits_non_zero_on_a_miss_and_zero_otherwise(tmp_path, capsys):
    assert _finish(tmp_path / "ok", [_entry("wrk-health.txt")]) == 0
    assert _finish(tmp_path / "miss", [_entry("wrk-health.txt", p95=150.0)]) == 1
    assert "1 measurement(s) miss the SLA" in capsys.readouterr().out
    assert _finish(tmp_path / "none", []) == 2


def _gauged_table(folder, calibration: dict) -> str:
    """The report.md of a run whose meta holds these gauge readings."""
    run = Run(Options(results=folder))
    run.meta = {"started": "2026-01-01T00:00:00+00:00", "scale": 10000, "calibration": calibration}
    run.entries = [_entry("wrk-health.txt")]
    run.tmp.rmdir()
    run.finish()
    return next(folder.iterdir()).joinpath("report.md").read_text()


def test_the_report_says_how_fast_the_machine_was_around_the_run(tmp_path):
    """The gauge's readings (perf/calibrate.py) head the table, and a comparison names the earlier run's; a run
    without them says nothing of it."""
    table = _gauged_table(tmp_path / "gauged", {"before": 12312.0, "after": 8230.0})
    assert "Machine: 12,312 req/s before and 8,230 req/s after the measurements" in table
    _finish(tmp_path / "plain", [_entry("wrk-health.txt")], compare=next((tmp_path / "gauged").iterdir()))
    plain = next((tmp_path / "plain").iterdir()).joinpath("report.md").read_text()
    assert "Machine:" not in plain
    assert "(its machine: 12,312 req/s before and 8,230 req/s after):" in plain  # the run it is compared with
    # A reading between the cache passes goes between the two.
    table = _gauged_table(tmp_path / "between", {"before": 12312.0, "between": [10100.0], "after": 8230.0})
    assert ("Machine: 12,312 req/s before, 10,100 req/s between the cache passes and 8,230 req/s after "
            "the measurements") in table


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_gauge_measures_a_bare_route_and_stops_it(monkeypatch):
    from perf import calibrate

    ports = []
    real_free_port = calibrate.free_port
    monkeypatch.setattr(calibrate, "free_port", lambda: ports.append(real_free_port()) or ports[-1])
    assert calibrate.gauge(seconds=1) > 100
    with pytest.raises(OSError):  # the route's process is gone
        socket.create_connection(("127.0.0.1", ports[0]), timeout=2).close()


def test_compare_flags_regressions(tmp_path):
    old_dir = tmp_path / "old"
    _finish(old_dir, [_entry("wrk-health.txt")])
    old = next(old_dir.iterdir())
    slower = [_entry("wrk-health.txt", rps=8000.0, p99=25.0)]
    assert _finish(tmp_path / "new", slower, compare=old, fail_on_regression=True) == 3
    md = next((tmp_path / "new").iterdir()).joinpath("report.md").read_text()
    assert "10,428 → 8,000 (-23%)" in md and "REGRESSION: req/s -23%, p99 +135%" in md
    assert _finish(tmp_path / "same", [_entry("wrk-health.txt")], compare=old, fail_on_regression=True) == 0


def test_every_scenario_has_a_script_for_each_tool():
    for scenario in SCENARIOS.values():
        for tool in ("wrk", "autocannon"):
            assert scenario.script(tool).is_file(), scenario.script(tool)


async def test_the_baseline_answers_what_the_service_answers_without_its_layers(aiohttp_client, client, db, alice,
                                                                               base_config, monkeypatch):
    """Same statements, same bytes: the baseline's bodies equal the service's for every read it serves."""
    from perf import baseline

    monkeypatch.setenv("DATABASE_URL", base_config.database_url)
    monkeypatch.setenv("PG_POOL_MIN", "1")
    monkeypatch.setenv("PG_POOL_MAX", "2")
    for n in range(25):
        await client.post("/api/posts", json={"title": f"Post {n}", "body": "Text", "tags": ["news"]},
                          headers=alice.headers)
    bare = await aiohttp_client(baseline.create_app())
    info = await (await bare.get("/_baseline")).json()
    assert info == {"scenarios": baseline.SCENARIOS, "skipped": {}}
    first = await (await client.get("/api/posts")).json()
    paths = ["/healthz", f"/api/users/{alice.id}", "/api/posts/3", "/api/posts", "/api/posts?page=2",
             "/api/posts?tag=news", f"/api/posts?cursor={first['meta']['nextCursor']}", f"/api/users/{alice.id}/posts",
             "/api/tags"]
    for path in paths:
        served, bare_answer = await client.get(path), await bare.get(path)
        assert bare_answer.status == served.status == 200, path
        assert await bare_answer.json() == await served.json(), path
        assert "X-Request-Id" not in bare_answer.headers  # no middleware at all
    assert (await bare.get("/api/users/999999")).status == 404


async def test_inprocess_measures_both_apps_on_reads_the_database_answered_once(client, alice, db, base_config,
                                                                                 make_config, monkeypatch):
    """`perf inprocess`: both apps answer 200 from replayed reads (each distinct statement read from PostgreSQL
    once), and a path that does not answer 200 is refused rather than measured."""
    from perf import baseline, inprocess
    from server.app import create_app

    monkeypatch.setenv("DATABASE_URL", base_config.database_url)
    monkeypatch.setenv("PG_POOL_MIN", "1")
    monkeypatch.setenv("PG_POOL_MAX", "2")
    await client.post("/api/posts", json={"title": "Post", "body": "Text", "tags": ["news"]}, headers=alice.headers)
    settings = {"rate_limit": "1000000000/1m", "cache_enabled": False, "access_log": False}
    paths = ["/api/tags", f"/api/users/{alice.id}"]
    with inprocess.replayed_reads() as answers:
        costs = await inprocess.measure(create_app(make_config(**settings)), baseline.create_app(), paths,
                                        requests=100, rounds=3)
        assert [c.path for c in costs] == paths
        assert all(c.service_us > 0 and c.baseline_us > 0 for c in costs)
        assert len(answers) == 2  # the same statement and arguments on both sides: one read each
        with pytest.raises(RuntimeError, match="measure a 200"):
            await inprocess.measure(create_app(make_config(**settings)), baseline.create_app(), ["/api/users/999999"],
                                    requests=50, rounds=1)


def test_the_baseline_runs_as_one_session_of_n_processes_and_stops_on_sigterm(base_config, tmp_path):
    """The runner starts the baseline as perf/stack.py does: one launcher in a new session (one
    CPU-scheduling group, as the service's workers are), N serving children on one port; SIGTERM stops all."""
    from perf.stack import start, stop, wait_ready
    from server.embedded import free_port
    from tests.faultkit import children

    port = free_port()
    env = {**os.environ, "DATABASE_URL": base_config.database_url, "HOST": "127.0.0.1", "PORT": str(port),
           "PG_POOL_MIN": "1", "PG_POOL_MAX": "2"}
    with open(tmp_path / "baseline.log", "wb") as log:
        proc = start(["-m", "perf.baseline", "--processes", "2"], env, log)
    try:
        wait_ready(f"http://127.0.0.1:{port}/_baseline", proc, timeout=30)
        kids = children(proc.pid)
        assert len(kids) == 2
        assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
        assert all(os.getsid(pid) == proc.pid for pid in kids)
        assert stop(proc) == 0
        for pid in kids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        stop(proc, timeout=5)


def test_the_baseline_stopped_while_its_processes_start_exits_0_with_none_left(base_config, tmp_path):
    """A child still starting has no SIGTERM handler yet and dies of the signal: that is stopping as asked."""
    from perf.stack import start, stop
    from server.embedded import free_port
    from tests.faultkit import children

    env = {**os.environ, "DATABASE_URL": base_config.database_url, "HOST": "127.0.0.1", "PORT": str(free_port()),
           "PG_POOL_MIN": "1", "PG_POOL_MAX": "2"}
    with open(tmp_path / "baseline.log", "wb") as log:
        proc = start(["-m", "perf.baseline", "--processes", "2"], env, log)
    try:
        deadline = time.monotonic() + 10
        while len(kids := children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(kids) == 2
        assert stop(proc) == 0  # at once: the children are still importing
        for pid in kids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        stop(proc, timeout=5)


def test_slices_add_up_to_one_measurement_with_the_worst_percentiles():
    a, b = _canned("wrk-health.txt"), _canned("wrk-health.txt")
    b = {**b, "requests": 10000, "duration_s": 2.0, "rps": 5000.0, "non2xx": 3,
         "latency_ms": {**b["latency_ms"], "p50": 9.0, "p99": 1.0, "mean": 4.0}}
    merged = tools.merge([a, b])
    assert merged["requests"] == 30996 and merged["duration_s"] == 4.014 and merged["non2xx"] == 3
    assert merged["rps"] == pytest.approx(30996 / 4.014, abs=0.1) and merged["slices"] == [a["rps"], 5000.0]
    assert merged["latency_ms"]["p50"] == 9.0 and merged["latency_ms"]["p99"] == a["latency_ms"]["p99"]
    assert merged["latency_ms"]["mean"] == pytest.approx((1.507 * 20996 + 4.0 * 10000) / 30996, abs=0.001)
    assert merged["error_rate"] == pytest.approx(3 / 30996)
    assert "cpu_s" not in merged
    assert tools.merge([a]) is a
    timed = tools.merge([{**a, "cpu_s": {"api": 1.5, "db": 0.25}}, {**b, "cpu_s": {"api": 0.5, "db": 0.5}}])
    assert timed["cpu_s"] == {"api": 2.0, "db": 0.75}  # seconds of each slice, summed


def test_beside_the_baseline_a_closed_loop_measurement_alternates_slices(tmp_path, monkeypatch):
    """Service and baseline take turns (A B B A A B), each for duration/slices; the open loop runs whole."""
    from perf import runner
    from perf.prepare import Data
    calls = []

    def fake_run(tool, scenario, load, env, raw=None):
        calls.append((load.url, tool, load.rate, load.duration))
        return {**_canned("wrk-health.txt"), "tool": tool, "rps": 100.0 if load.url == "S" else 200.0}

    monkeypatch.setattr(runner.tools, "run", fake_run)
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(Run, "prepare", lambda self, t, s, data, tool: {})
    run = Run(Options(results=tmp_path, duration=30.0, slices=3, rate=1000))
    run.meta = {"scale": 10_000}
    targets = [runner.Target("S", "service", "off"), runner.Target("B", "baseline", None, beside="off")]
    run.scenario(targets, SCENARIOS["tags"], Data(posts=1, users=1, tags=["a"]), 10_000, ["wrk"])
    run.tmp.rmdir()
    assert calls == [("S", "wrk", 0, 10.0), ("B", "wrk", 0, 10.0), ("B", "wrk", 0, 10.0), ("S", "wrk", 0, 10.0),
                     ("S", "wrk", 0, 10.0), ("B", "wrk", 0, 10.0), ("S", "autocannon", 1000, 30.0),
                     ("B", "autocannon", 1000, 30.0)]
    closed = [e for e in run.entries if e["mode"] == "closed"]
    assert [(e["target"], e["requests"], e.get("beside")) for e in closed] == [("service", 3 * 20996, None),
                                                                             ("baseline", 3 * 20996, "off")]
    assert closed[1]["slices"] == [200.0, 200.0, 200.0]


def test_ratios_are_taken_against_the_baseline_beside_the_same_cache_setting(tmp_path):
    entries = [_entry("wrk-health.txt", scenario="post", cache="on", rps=9000.0),
               _entry("wrk-health.txt", scenario="post", cache="off", rps=2700.0),
               _entry("wrk-health.txt", scenario="post", target="baseline", cache=None, beside="on", rps=3000.0),
               _entry("wrk-health.txt", scenario="post", target="baseline", cache=None, beside="off", rps=3600.0)]
    body = {"meta": {"started": "2026-01-01T00:00:00+00:00", "scale": 10_000}, "entries": entries}
    report.finish(body, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [e["ratio"] for e in saved["entries"][:2]] == [3.0, 0.75]
    assert "| post | wrk | baseline | 10,000 | beside on | closed | 3,000 |" in (tmp_path / "report.md").read_text()


def _descendants(pid: int) -> set[int]:
    from perf.cpu import tree

    return set(tree(pid)) - {pid}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_sigterm_ends_a_run_and_stops_every_server_it_started(tmp_root, tmp_path):
    """A run started in the background is stopped with SIGTERM; what it started (PostgreSQL, Redis, the
    service's and the baseline's processes, wrk) must not outlive it."""
    var = tmp_root / "perf-sigterm"  # reachable by PostgreSQL's user, unlike tmp_path
    args = [sys.executable, "-m", "perf", "run", "--scenario", "health", "--tool", "wrk", "--cache", "off",
            "--scale", "1000", "--scale-check", "0", "--rate", "0", "--warmup", "0", "--duration", "60",
            "--slices", "1", "--no-calibration", "--var", str(var), "--results", str(tmp_path / "results")]
    with open(tmp_path / "run.log", "wb") as out:
        run = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=Path(__file__).resolve().parent.parent)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        measuring = False
        while not measuring and time.monotonic() < deadline and run.poll() is None:
            now = _descendants(run.pid)
            started |= now
            measuring = any(_cmdline(pid).startswith(b"wrk ") for pid in now)  # every server is up
            time.sleep(0.2)
        assert measuring and run.poll() is None, (tmp_path / "run.log").read_text()
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) != 0
        time.sleep(0.5)
        alive = []
        for pid in started:
            try:
                os.kill(pid, 0)
                alive.append(_cmdline(pid)[:120])
            except ProcessLookupError:
                pass
        assert not alive, alive
    finally:  # whatever the outcome, nothing of it is left running
        for pid in [run.pid, *started]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.wait()


_BURNER = """
import os, sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
sys.stdin.readline()
r, w = os.pipe()
if os.fork() == 0:
    burn(0.3); os.write(w, b"x"); time.sleep(60); os._exit(0)
burn(0.3); os.read(r, 1); print("burned", flush=True); time.sleep(60)
"""


def test_the_cpu_meter_counts_a_process_tree_and_the_waited_for_tool():
    """perf/cpu.py: a group is its root and every descendant; `tool` is this process's waited-for children."""
    from perf import cpu

    with subprocess.Popen([sys.executable, "-c", _BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            meter = cpu.Meter({"api": lambda: cpu.tree(proc.pid), "gone": lambda: [2**22 + 7]})
            before = meter.read()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "burned\n"
            subprocess.run([sys.executable, "-c", _BURNER.split("sys.stdin")[0] + "burn(0.2)"], check=True)
            spent = cpu.Meter.spent(before, meter.read())
        finally:
            for pid in cpu.tree(proc.pid)[::-1]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert 0.55 <= spent["api"] < 2.0  # the parent's 0.3 s and its child's
    assert spent["tool"] >= 0.19 and spent["gone"] == 0.0
    assert cpu.per_request(spent, 1000)["api"] == pytest.approx(spent["api"] * 1000, abs=0.1)


_STEPS = """
import sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
for seconds in sys.argv[1:]:
    burn(float(seconds)); print("burned", flush=True); sys.stdin.readline()
"""


def test_a_process_that_ends_during_a_measurement_takes_only_its_own_time_with_it():
    """A PostgreSQL backend closed by an idle pool while another target is loaded: its whole past must not
    be taken off the group's figure (the first meter summed each group's ticks before and after, and such
    a row's `db` came out as zero)."""
    from perf import cpu

    def start(*steps: float) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _STEPS, *map(str, steps)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "burned\n"
        return proc

    old, busy = start(0.6), start(0, 0.3)  # one with a past that is about to end, one about to work
    try:
        meter = cpu.Meter({"db": lambda: [old.pid, busy.pid]})
        before = meter.read()
        old.communicate("\n", timeout=30)
        busy.stdin.write("\n")
        busy.stdin.flush()
        assert busy.stdout.readline() == "burned\n"
        spent = cpu.Meter.spent(before, meter.read())
    finally:
        for proc in (old, busy):
            proc.kill()
            proc.communicate()
    assert 0.28 <= spent["db"] < 0.6  # the busy one's 0.3 s; nothing of the other's 0.6


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_run_of_our_own_stack_reports_cpu_per_request_of_each_target(tmp_root, tmp_path):
    """A short real run: the service and the baseline each get the CPU of their own processes, PostgreSQL's
    and the tool's per request, and the table shows them."""
    var = tmp_root / "perf-sigterm"  # the same cluster as the SIGTERM test: seeded once
    args = [sys.executable, "-m", "perf", "run", "--scenario", "user", "--tool", "wrk", "--cache", "off",
            "--scale", "1000", "--scale-check", "0", "--rate", "0", "--warmup", "0", "--duration", "2",
            "--slices", "1", "--no-calibration", "--var", str(var), "--results", str(tmp_path / "results")]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: an SLA missed on a busy machine
    folder = next((tmp_path / "results").iterdir())
    entries = json.loads((folder / "report.json").read_text())["entries"]
    assert [e["target"] for e in entries] == ["service", "baseline"]
    for e in entries:
        assert e["requests"] > 100 and set(e["cpu_us"]) == {"api", "db", "db_background", "redis", "tool"}
        assert e["cpu_us"]["api"] > 0 and e["cpu_us"]["db"] > 0 and e["cpu_us"]["tool"] > 0, e
        assert e["cpu_us"]["db_background"] < e["cpu_us"]["db"], e  # reads: the backends do the work
        assert e["cpu_us"]["api"] < 1e6 / e["rps"] * os.cpu_count()  # no more than every core, all the time
    assert "| CPU µs: api · db (+bg) · redis · tool |" in (folder / "report.md").read_text()


def test_a_pass_reads_first_then_runs_the_mixed_workload_then_the_other_writes():
    from perf.runner import pass_order

    names = [s.name for s in pass_order([SCENARIOS[n] for n in ("login", "post", "mixed", "comment", "tags")])]
    assert names == ["post", "tags", "mixed", "login", "comment"]
