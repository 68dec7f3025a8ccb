"""One run: start (or reach) the targets, prepare data, warm up, measure every scenario, write the report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import calibrate, chart, cpu, prepare, report, tools
from .prepare import Data
from .scenarios import HERE, SCENARIOS, Scenario
from .stack import ROOT, Stack

# Seconds between a login or sign-up load and the next: a tool that stops leaves up to one request per
# connection queued for the password hash, which the service still runs; the next measurement would
# start against a full hash queue and get 503s.
HASH_SETTLE = 4
# --scale-check: the second scale's run database (its service runs beside the first), and the tool that
# measures it, closed loop (the open loop is always autocannon's).
BIG_DB = "perf_run_big"
SCALE_CHECK_TOOL = "autocannon"

log = logging.getLogger("perf")


@dataclass(frozen=True)
class Target:
    url: str
    name: str  # service | baseline
    cache: str | None  # on | off for the service
    beside: str | None = None  # the baseline: the cache setting of the pass it runs beside


@dataclass
class Options:
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    scale: int = 10_000
    scale_check: int | None = None  # also measure the reads on a data set of this many posts (--scale-check)
    duration: float = 30.0
    # A closed-loop measurement taken on the service and the baseline beside it is taken in this many
    # alternating slices of duration/slices seconds (service, baseline, baseline, service, ...), summed.
    slices: int = 3
    warmup: float = 5.0
    connections: int = 100
    tools: list[str] = field(default_factory=lambda: ["wrk", "autocannon"])
    rate: int = 1000
    target: str | None = None
    workers: int = 2
    caches: list[str] = field(default_factory=lambda: ["on", "off"])
    baseline: bool = True
    seed: int = 1
    threads: int = 1
    pool_max: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    compare: Path | None = None
    regression: float = 0.10
    fail_on_regression: bool = False
    results: Path = HERE / "results"
    var: Path = ROOT / "var" / "perf"
    posts: int | None = None  # with --target: ranges the API cannot tell
    users: int | None = None
    calibrate: bool = True  # the machine's gauge (perf/calibrate.py) before and after the measurements


class Run:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.started = datetime.now(timezone.utc)
        self.folder = opts.results / self.started.strftime("%Y%m%d-%H%M%S")
        self.tmp = Path(tempfile.mkdtemp(prefix="perf-run-"))
        self.tmp.chmod(0o755)  # the embedded PostgreSQL's user must reach it
        self.entries: list[dict] = []
        self.skipped: list[dict] = []
        # Base URL -> the CPU meter of what serves it and of what it uses (perf/cpu.py); only for our own stack.
        self.meters: dict[str, cpu.Meter] = {}

    def skip(self, scenario: Scenario, target: str, reason: str) -> None:
        entry = {"scenario": scenario.name, "target": target, "reason": reason}
        if entry not in self.skipped:  # the same reason under the second cache setting is said once
            self.skipped.append(entry)
        print(f"  skip {scenario.name} on {target}: {reason}", flush=True)

    def measure(self, url: str, target: str, cache: str | None, scenarios: list[Scenario], data: Data,
                twin: tuple[str, Data] | None = None, beside: tuple[str, set[str]] | None = None) -> None:
        """Every scenario on `url`. With `beside` (the baseline's URL and the scenarios it serves), each of
        those is measured on the baseline too, tool by tool, each right after the same measurement on the
        service: a ratio then compares two measurements a minute apart, not an hour apart on a machine
        whose load drifts. With `twin` (the same service on the --scale-check database), each read is
        measured there too, right after, so that both scales are measured under the same conditions."""
        o = self.opts
        for s in scenarios:
            targets = [Target(url, target, cache)]
            if beside is not None and s.name in beside[1]:
                targets.append(Target(beside[0], "baseline", None, beside=cache))
            self.scenario(targets, s, data, self.meta["scale"], o.tools)
            if twin is not None and s.read:
                self.scenario([Target(twin[0], target, cache)], s, twin[1], o.scale_check, [SCALE_CHECK_TOOL])

    def prepare(self, t: Target, s: Scenario, data: Data, warmup_tool: str) -> dict[str, str] | None:
        """The tools' environment for `s` on `t`, once `t` is warmed up; None (and a skip) when it cannot run."""
        o = self.opts
        if t.name == "service" and (missing := prepare.missing_routes(t.url, s, data)):
            return self.skip(s, t.name, f"route not available yet: {', '.join(missing)}")
        if s.needs == "cursors" and not data.cursors:
            return self.skip(s, t.name, "no cursors: GET /api/posts gave no meta.nextCursor")
        if s.needs == "tags" and not data.tags:
            return self.skip(s, t.name, "no tags in the data")
        if s.tokens:  # minted now, so that none expires during the scenario's measurements
            data.tokens = prepare.mint_tokens(t.url, data.users)
            if not data.tokens:
                return self.skip(s, t.name, "no access tokens: POST /api/auth/login did not answer 200")
        env = data.write(self.tmp / "data", prepare.nonce())
        if o.warmup > 0:  # fills caches, pools and prepared-statement caches before anything counts
            try:
                tools.run(warmup_tool, s, tools.Load(t.url, o.connections, o.warmup, threads=o.threads),
                          {**env, "PERF_NONCE": prepare.nonce()})
            except tools.ToolError as exc:
                return self.skip(s, t.name, f"warm-up failed: {exc}")
            if s.hashing:  # the warm-up's last requests are still queued for the password hash
                time.sleep(HASH_SETTLE)
        return env

    def scenario(self, targets: list[Target], s: Scenario, data: Data, scale: int, tool_names: list[str]) -> None:
        """`s` on each target, warmed up first; then each tool's measurement on every target in turn.

        With more than one target, a closed-loop measurement is taken in alternating slices (--slices):
        the load on this shared machine drifts over tens of seconds, by ±10 % between two adjacent
        30-second measurements, and a ratio of two measurements taken one after the other carries all of
        it. Slices in the order A B B A A B ... meet the same drift on both sides and neither side is
        always first. Each target's slices add up to the same duration as one measurement."""
        o = self.opts
        ready = [(t, env) for t in targets if (env := self.prepare(t, s, data, tool_names[0])) is not None]
        runs = [(tool, 0) for tool in tool_names]
        if o.rate and s.open_loop:
            runs.append(("autocannon", o.rate))
        for tool, rate in runs:
            load = tools.Load("", o.connections, o.duration, rate=rate, threads=o.threads)
            slices = o.slices if len(ready) > 1 and not rate else 1
            parts: dict[Target, list[dict] | None] = {t: [] for t, _ in ready}  # None: a slice failed
            for i in range(slices):
                for t, env in (ready if i % 2 == 0 else ready[::-1]):
                    if parts[t] is None:
                        continue
                    part = dataclasses.replace(load, url=t.url, duration=o.duration / slices)
                    result = self.run_tool(t, s, tool, part, env, scale, i if slices > 1 else None)
                    parts[t] = None if result is None else parts[t] + [result]
            for t, _ in ready:
                if parts[t]:
                    self.record(t, s, dataclasses.replace(load, url=t.url), scale, tools.merge(parts[t]))

    def run_tool(self, t: Target, s: Scenario, tool: str, load: tools.Load, env: dict[str, str], scale: int,
                 part: int | None) -> dict | None:
        """One run of `tool` (slice `part` of a measurement); None (and a skip) when it failed."""
        mode = "open" if load.rate else "closed"
        name = f"{t.name}-{t.cache or t.beside or 'na'}-{s.name}-{tool}-{mode}-{scale}"
        name += "" if part is None else f"-slice{part + 1}"
        meter = self.meters.get(t.url)
        try:
            raw = self.folder / "raw" / f"{name}.txt"
            before = meter.read() if meter else None
            result = tools.run(tool, s, load, {**env, "PERF_NONCE": prepare.nonce()}, raw)
            if meter:
                result["cpu_s"] = meter.spent(before, meter.read())
        except tools.ToolError as exc:
            self.skip(s, t.name, str(exc))
            return None
        finally:
            time.sleep(HASH_SETTLE if s.hashing else 1)  # let queues drain between measurements
        return result

    def record(self, t: Target, s: Scenario, load: tools.Load, scale: int, result: dict) -> None:
        mode = "open" if load.rate else "closed"
        entry = {"scenario": s.name, "target": t.name, "scale": scale, "cache": t.cache, "mode": mode,
                 "connections": load.connections, "rate": load.rate, **result}
        if "cpu_s" in result:
            entry["cpu_us"] = cpu.per_request(result["cpu_s"], result["requests"])
        if t.beside is not None:
            entry["beside"] = t.beside
        self.entries.append(entry)
        lat = entry["latency_ms"]
        print(f"  {t.name:8} {scale:>8} {t.cache or '':3} {s.name:11} {result['tool']:10} {mode:6} "
              f"{entry['rps']:>9,.0f} req/s  "
              f"p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f} ms  "
              f"non-2xx {entry['non2xx']}  errors {entry['errors']}", flush=True)

    def own_stack(self) -> None:
        o = self.opts
        with Stack(o.var, self.tmp, o.workers, o.pool_max, logs=self.folder / "raw") as stack:
            seeded = stack.seed(o.scale, o.seed)
            data = Data(posts=seeded.posts, users=seeded.users, tags=seeded.tags, seed=o.seed)
            self.meta.update(posts=seeded.posts, users=seeded.users, pool=list(stack.pools()))
            big_data = None
            if o.scale_check:
                big = stack.seed(o.scale_check, o.seed, BIG_DB)
                big_data = Data(posts=big.posts, users=big.users, tags=big.tags, seed=o.seed)
            selected = [SCENARIOS[n] for n in o.scenarios]
            # The pass the second scale runs beside, and the baseline with every read: cache off when the
            # run has it (the 0.85× comparison is against it; with ids drawn uniformly from 10^6 posts
            # nearly every read misses the cache, so cache-on figures would compare hit rates, not how the
            # queries scale). In the other pass the baseline runs beside the reads judged with the cache on.
            beside_pass = "off" if "off" in o.caches else o.caches[0]
            for i, cache in enumerate(o.caches):
                if i:
                    stack.reset()
                    if o.calibrate:  # the machine between the passes, with only PostgreSQL and Redis up, idle
                        self.meta["calibration"].setdefault("between", []).append(calibrate.gauge())
                # Writes and logins do not depend on the cache: measured once, with the first setting.
                scenarios = pass_order([s for s in selected if i == 0 or s.open_loop])
                extra = {"CACHE_ENABLED": "true" if cache == "on" else "false",
                         # Sign-up and login queue for the hash instead of answering 503 (see README).
                         "HASH_QUEUE": str(max(32, o.connections)), **o.env}
                print(f"service, cache {cache}, {o.workers} workers", flush=True)
                check = big_data is not None and cache == beside_pass
                compared = [s for s in scenarios if s.read and (cache == beside_pass or s.cache_judged)]
                with_baseline = o.baseline and bool(compared)
                if with_baseline:
                    print(f"  with the baseline beside it ({o.workers} processes) for "
                          f"{', '.join(s.name for s in compared)}", flush=True)
                with stack.service(extra) as url, \
                        (stack.service(extra, BIG_DB) if check else contextlib.nullcontext()) as big_url, \
                        (stack.baseline() if with_baseline else contextlib.nullcontext()) as baseline:
                    self.meter(stack, url, big_url, baseline[0] if baseline else None)
                    data.cursors = data.cursors or prepare.harvest_cursors(url)
                    twin = beside = None
                    if check:
                        big_data.cursors = big_data.cursors or prepare.harvest_cursors(big_url)
                        twin = (big_url, big_data)
                    if baseline is not None:
                        beside = (baseline[0], self.baseline_serves(baseline[1], selected)
                                  & {s.name for s in compared})
                    self.measure(url, "service", cache, scenarios, data, twin, beside)

    def meter(self, stack: Stack, *urls: str | None) -> None:
        """CPU meters for the targets at `urls`: each one's own processes as `api`, and the stack's PostgreSQL
        (its client backends and its background processes) and Redis, which every target uses (only one
        is loaded at a time)."""
        shared = {"db": lambda: cpu.postgres(stack.pg.proc.pid)[0],
                  "db_background": lambda: cpu.postgres(stack.pg.proc.pid)[1],
                  "redis": lambda: [stack.redis.proc.pid]}
        self.meters = {url: cpu.Meter({"api": lambda url=url: cpu.tree(stack.root_pid(url)), **shared})
                       for url in urls if url is not None}

    def baseline_serves(self, served: dict, selected: list[Scenario]) -> set[str]:
        """What the baseline serves of the selected scenarios; the others are listed as skipped with its reason."""
        self.meta["baseline_skipped"] = served.get("skipped", {})
        for s in selected:
            if s.name not in served["scenarios"]:
                self.skip(s, "baseline", served.get("skipped", {}).get(s.name, "not served by the baseline"))
        return set(served["scenarios"])

    def execute(self) -> int:
        o = self.opts
        for tool in set(o.tools) | ({"autocannon"} if o.rate else set()):
            tools.check(tool)
        self.meta = {"started": self.started.isoformat(timespec="seconds"), "scale": o.scale,
                     "scale_check": o.scale_check, "seed": o.seed,
                     "workers": o.workers, "connections": o.connections, "duration": o.duration,
                     "warmup": o.warmup, "rate": o.rate, "tools": o.tools, "caches": o.caches,
                     "target": o.target or "own", "commit": _commit(), "machine": _machine()}
        try:
            # The gauge before anything of the run is started, between the cache passes (own_stack), and
            # once everything is stopped: a run of 80 minutes can see the machine's speed change.
            if o.calibrate:
                self.meta["calibration"] = {"before": calibrate.gauge()}
            if o.target:
                data = prepare.discover(o.target.rstrip("/"), o.posts, o.users, o.seed)
                data.cursors = prepare.harvest_cursors(o.target.rstrip("/"))
                # The target's own settings are unknown: its scale is what it holds.
                self.meta.update(posts=data.posts, users=data.users, scale=data.posts, workers=None)
                self.measure(o.target.rstrip("/"), "service", None, [SCENARIOS[n] for n in o.scenarios], data)
            else:
                self.own_stack()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if o.calibrate:
            self.meta["calibration"]["after"] = calibrate.gauge()
        return self.finish()

    def finish(self) -> int:
        o = self.opts
        old = json.loads((o.compare / "report.json").read_text()) if o.compare else None
        body = {"meta": self.meta, "entries": self.entries, "skipped": self.skipped,
                "compared_with": str(o.compare) if o.compare else None}
        misses, regressions = report.finish(body, self.folder, old, o.regression)
        drawn = chart.draw(self.entries, self.folder / "latency.png") if self.entries else False
        print(f"\n{self.folder / 'report.md'}" + ("" if drawn else " (no latency.png: install the perf extra)"))
        print((self.folder / "report.md").read_text())
        if not self.entries:
            print("nothing was measured")
            return 2
        if misses:
            print(f"{misses} measurement(s) miss the SLA")
            return 1
        if regressions and o.fail_on_regression:
            print(f"{len(regressions)} regression(s) against {o.compare}")
            return 3
        return 0


def pass_order(scenarios: list[Scenario]) -> list[Scenario]:
    """A pass's order: the reads first, so that the baseline beside them reads the data the service has
    before it writes anything; then the mixed workload, so that each pass measures it on that same data
    (after the comment, login and sign-up scenarios of the first pass it read and wrote a database grown
    by some 50,000 comments and thousands of users, and the two cache settings did not compare); then
    the other writes."""
    return sorted(scenarios, key=lambda s: (not s.read, not s.open_loop))


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _machine() -> str:
    return f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()} ({sys.base_prefix})"
