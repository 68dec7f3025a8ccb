"""Running wrk and autocannon on one scenario, and reading their figures into one shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .scenarios import HERE, Scenario

MARKER = "PERF_RESULT "
PERCENTILES = ("50", "75", "90", "95", "99", "99.9", "99.99")
TIMEOUT_S = 10  # a request unanswered for this long counts as an error, in both tools


class ToolError(RuntimeError):
    """A load tool is missing, failed, or printed no figures."""


@dataclass(frozen=True)
class Load:
    url: str
    connections: int
    duration: float
    rate: int = 0      # > 0: open loop at this many requests per second (autocannon only)
    threads: int = 1   # wrk threads; one keeps the second core for the server on a 2-core machine


def check(tool: str) -> None:
    if tool == "wrk" and not shutil.which("wrk"):
        raise ToolError("wrk is not installed: run `make perf-setup` (apt-get install -y wrk)")
    if tool == "autocannon":
        if not shutil.which("node"):
            raise ToolError("node is not installed: autocannon needs Node.js 18 or later")
        if not (HERE / "node_modules" / "autocannon").is_dir():
            raise ToolError("autocannon is not installed: run `make perf-setup` (npm ci in perf/)")


def command(tool: str, scenario: Scenario, load: Load) -> list[str]:
    script = str(scenario.script(tool))
    if tool == "wrk":
        if load.rate:
            raise ToolError("wrk runs closed loop only; use autocannon for a fixed rate")
        # wrk takes whole seconds only (it printed its usage and exited 1 for a slice of 10/3 s).
        return ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{max(1, round(load.duration))}s",
                f"--timeout={TIMEOUT_S}s", "-s", script, load.url]
    return ["node", script, "--url", load.url, "--connections", str(load.connections),
            "--duration", f"{load.duration:g}", "--rate", str(load.rate)]


def run(tool: str, scenario: Scenario, load: Load, env: dict[str, str], raw: Path | None = None) -> dict:
    """Run one measurement; the tool's whole output goes to `raw` for later reading."""
    full_env = {**os.environ, **env, "PERF_WRK_DIR": str(HERE / "wrk")}
    try:
        # A session of its own: its own CPU-scheduling group under autogroup, whichever target it loads
        # (perf/stack.py, `start`).
        out = subprocess.run(command(tool, scenario, load), env=full_env, capture_output=True, text=True,
                             timeout=load.duration + 120, check=False, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{tool} {scenario.name} did not finish") from exc
    if raw is not None:
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(f"$ {' '.join(command(tool, scenario, load))}\n{out.stdout}\n{out.stderr}")
    if out.returncode != 0:
        said = out.stderr.strip() or out.stdout.strip()  # wrk prints its usage to stdout
        raise ToolError(f"{tool} {scenario.name} exited {out.returncode}: {said[-300:]}")
    return parse(out.stdout)


def parse(output: str) -> dict:
    """The figures of a PERF_RESULT line (printed by perf/wrk/common.lua or perf/autocannon/common.js)."""
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise ToolError("the tool printed no PERF_RESULT line")
    raw = json.loads(lines[-1][len(MARKER):])
    if raw["tool"] == "wrk":
        e = raw["errors"]
        duration = raw["duration_us"] / 1e6
        errors, timeouts, non2xx = e["connect"] + e["read"] + e["write"] + e["timeout"], e["timeout"], e["status"]
    else:
        duration = raw["duration_s"]
        errors, timeouts, non2xx = raw["errors"], raw["timeouts"], raw["non2xx"]
    lat = raw["latency_us"]
    latency = {f"p{p}": lat["percentiles"][p] / 1000 for p in PERCENTILES}
    latency.update(mean=lat["mean"] / 1000, max=lat["max"] / 1000)
    return _figures(raw["tool"], raw["requests"], duration, raw["bytes"], errors, timeouts, non2xx,
                    {k: round(v, 3) for k, v in latency.items()}, raw.get("status"), raw.get("rps"))


def _figures(tool: str, requests: int, duration: float, size: int, errors: int, timeouts: int, non2xx: int,
             latency: dict, status: dict | None, rps: float | None = None) -> dict:
    return {
        "tool": tool, "requests": requests, "duration_s": round(duration, 3),
        "rps": rps or (round(requests / duration, 1) if duration else 0.0), "bytes": size,
        "errors": errors, "timeouts": timeouts, "non2xx": non2xx,
        # Failed exchanges over attempted ones; a refused connection never became a request.
        "error_rate": (errors + non2xx) / max(1, requests + errors),
        "latency_ms": latency, "status": status,
    }


def merge(parts: list[dict]) -> dict:
    """One measurement from its slices (the runner's --slices): counts, time and CPU summed, req/s over the
    summed time, and each latency percentile the highest of the slices' (an upper bound: the slices'
    percentiles do not combine exactly, and a verdict must not come out better than the truth)."""
    if len(parts) == 1:
        return parts[0]
    requests = sum(p["requests"] for p in parts)
    latency = {k: max(p["latency_ms"][k] for p in parts) for k in parts[0]["latency_ms"]}
    latency["mean"] = round(sum(p["latency_ms"]["mean"] * p["requests"] for p in parts) / max(1, requests), 3)
    status = None
    if all(isinstance(p.get("status"), dict) for p in parts):
        status = dict(sum((Counter(p["status"]) for p in parts), Counter()))
    total = {k: sum(p[k] for p in parts) for k in ("duration_s", "bytes", "errors", "timeouts", "non2xx")}
    merged = {**_figures(parts[0]["tool"], requests, total["duration_s"], total["bytes"], total["errors"],
                         total["timeouts"], total["non2xx"], latency, status),
              "slices": [p["rps"] for p in parts]}
    if all("cpu_s" in p for p in parts):  # perf/cpu.py: seconds per group, summed
        merged["cpu_s"] = {k: round(sum(p["cpu_s"][k] for p in parts), 3) for k in parts[0]["cpu_s"]}
    return merged
