"""`python -m perf layers`: what our layers cost, per request, against the bare baseline.

Starts the run's stack (PostgreSQL with the seeded data, Redis, the service with `--workers N` and the
baseline with as many processes, both on the same database), then for each path alternates short
closed-loop wrk runs between the two and reads the CPU time of their API processes from /proc before
and after each. It prints, per path, the medians of req/s and of CPU microseconds per request (user and
system) for both, and their ratio. CPU per request moves much less than req/s when other work shares
the machine, so it is the figure to compare between changes; alternating rounds puts the same noise on
both sides. perf/README.md, "What our layers cost", has the latest figures.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cpu import TICK, ticks
from .stack import Stack


@dataclass(frozen=True)
class Sample:
    rps: float
    user_us: float  # CPU per request of the serving processes, user mode
    system_us: float


def sample(url: str, pids: list[int], seconds: float, connections: int) -> Sample:
    before = ticks(pids)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url], capture_output=True,
                         text=True, check=True, start_new_session=True).stdout  # see tools.run
    after = ticks(pids)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    per = 1_000_000 / TICK / max(requests, 1)
    return Sample(rps, (after[0] - before[0]) * per, (after[1] - before[1]) * per)


def _median(samples: list[Sample]) -> Sample:
    return Sample(*(statistics.median(getattr(s, f) for s in samples) for f in ("rps", "user_us", "system_us")))


def compare(urls: tuple[str, str], pids: tuple[list[int], list[int]], path: str, rounds: int, seconds: float,
            connections: int) -> tuple[Sample, Sample]:
    """Medians of `rounds` alternating samples of (service, baseline) on `path`."""
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(sample(urls[0] + path, pids[0], seconds, connections))
        theirs.append(sample(urls[1] + path, pids[1], seconds, connections))
    return _median(ours), _median(theirs)


def run(paths: list[str], *, scale: int, workers: int, cache: str, rounds: int, seconds: float,
        connections: int, var: Path, env: dict[str, str] | None = None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="perf-layers-"))
    tmp.chmod(0o755)  # the embedded PostgreSQL's user must reach it
    try:
        _run(paths, tmp, scale=scale, workers=workers, cache=cache, rounds=rounds, seconds=seconds,
             connections=connections, var=var, env=env or {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(paths: list[str], tmp: Path, *, scale: int, workers: int, cache: str, rounds: int, seconds: float,
         connections: int, var: Path, env: dict[str, str]) -> None:
    with Stack(var, tmp, workers, None, logs=tmp / "logs") as stack:
        stack.seed(scale, 1)
        with stack.service({"CACHE_ENABLED": "true" if cache == "on" else "false", **env}) as url, \
                stack.baseline() as (base, _):
            pids = (stack.serving_pids(url), stack.serving_pids(base))
            print(f"{'path':28} {'service req/s':>13} {'CPU µs':>12} {'baseline req/s':>14} {'CPU µs':>12} {'ratio':>6}")
            for path in paths:
                ours, theirs = compare((url, base), pids, path, rounds, seconds, connections)
                print(f"{path:28} {ours.rps:13,.0f} {ours.user_us:5.0f}+{ours.system_us:<5.0f} "
                      f"{theirs.rps:14,.0f} {theirs.user_us:5.0f}+{theirs.system_us:<5.0f} "
                      f"{ours.rps / theirs.rps:6.2f}", flush=True)


DEFAULT_PATHS = ["/api/users/1", "/api/tags", "/api/posts/1", "/api/posts"]
