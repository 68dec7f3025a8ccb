"""The run's verdicts and files: report.json, report.md (one table), the SLA check and the comparison."""

from __future__ import annotations

import json
from pathlib import Path

from .calibrate import METHOD
from .scenarios import SCENARIOS

SCALE_GROWTH = 1.5  # --scale-check: a read's p95 on the bigger data set may be at most this times the first's
# The original design's floor, at 100 connections (login and sign-up: errors only, see `sla`).
SLA_P95_MS, SLA_RPS, SLA_ERROR_RATE = 100.0, 1000.0, 0.001
OPEN_LOOP_DELIVERY = 0.95  # at a fixed rate, at least this share of the offered requests must be answered


def key(entry: dict) -> tuple:
    return entry["scenario"], entry["tool"], entry["target"], entry.get("cache") or entry.get("beside"), entry["mode"]


def sla(entry: dict) -> list[str]:
    """What `entry` misses of the SLA; baseline entries are not judged."""
    if entry["target"] != "service":
        return []
    missed = []
    if entry["error_rate"] >= SLA_ERROR_RATE:
        missed.append(f"errors {entry['error_rate']:.2%} ≥ {SLA_ERROR_RATE:.1%}")
    if SCENARIOS[entry["scenario"]].hashing:  # the password hash is the cost by design
        return missed
    if entry["latency_ms"]["p95"] >= SLA_P95_MS:
        missed.append(f"p95 {entry['latency_ms']['p95']:.1f} ms ≥ {SLA_P95_MS:g} ms")
    if entry["mode"] == "closed" and entry["rps"] <= SLA_RPS:
        missed.append(f"{entry['rps']:.0f} req/s ≤ {SLA_RPS:g}")
    if entry["mode"] == "open" and entry["rps"] < OPEN_LOOP_DELIVERY * entry["rate"]:
        missed.append(f"{entry['rps']:.0f} req/s delivered of {entry['rate']} offered")
    return missed


def _scale(entry: dict, scale: int | None) -> int | None:
    """The entry's data set (runs before --scale-check had one scale, the run's)."""
    return entry.get("scale", scale)


def add_ratios(entries: list[dict], scale: int | None = None) -> None:
    """`ratio`: the service's req/s over the baseline's (closed loop) or its p99 over the baseline's (open),
    on the same data set; against the baseline measured beside the same cache setting when there is one."""
    base: dict[tuple, dict] = {}
    for e in entries:
        if e["target"] == "baseline":
            base.setdefault((e["scenario"], e["tool"], e["mode"], None), e)
            base[e["scenario"], e["tool"], e["mode"], e.get("beside")] = e
    for e in entries:
        same = (e["scenario"], e["tool"], e["mode"])
        b = base.get((*same, e.get("cache"))) or base.get((*same, None))
        e["ratio"] = None
        if e["target"] == "service" and b and _scale(e, scale) == _scale(b, scale):
            if e["mode"] == "closed" and b["rps"]:
                e["ratio"] = round(e["rps"] / b["rps"], 3)
            elif e["mode"] == "open" and b["latency_ms"]["p99"]:
                e["ratio"] = round(e["latency_ms"]["p99"] / b["latency_ms"]["p99"], 3)


def scale_growth(entries: list[dict], scale: int | None) -> list[tuple[dict, dict, float]]:
    """(first scale's entry, bigger scale's entry, p95 growth) for each read measured at both in this run."""
    first = {key(e): e for e in entries if _scale(e, scale) == scale}
    out = []
    for e in entries:
        small = first.get(key(e))
        if _scale(e, scale) != scale and small and SCENARIOS[e["scenario"]].read and small["latency_ms"]["p95"]:
            out.append((small, e, e["latency_ms"]["p95"] / small["latency_ms"]["p95"]))
    return out


def goals(entries: list[dict], scale: int | None = None) -> list[tuple[str, bool | None]]:
    """The issue's targets beyond the SLA, each with whether this run meets it (reported, not enforced);
    None for a figure shown beside them and not judged (the probes' ratios)."""
    out = []
    for small, big, growth in scale_growth(entries, scale):
        out.append((f"{big['scenario']} {big['tool']} cache {big.get('cache')} {big['mode']} loop: p95 at "
                    f"{_scale(big, scale):,} posts ≤ {SCALE_GROWTH:g}× p95 at {scale:,} ({_ms(small['latency_ms']['p95'])}"
                    f" → {_ms(big['latency_ms']['p95'])} ms, ×{growth:.2f})", growth <= SCALE_GROWTH))
    for e in entries:
        if e["target"] != "service" or not SCENARIOS[e["scenario"]].open_loop:
            continue
        if _scale(e, scale) != scale:  # judged above against the first scale; its errors still count
            if e["errors"] + e["non2xx"]:
                out.append((f"{e['scenario']} {e['tool']} cache {e.get('cache')} {e['mode']} loop at "
                            f"{_scale(e, scale):,} posts: zero errors ({e['errors']} + {e['non2xx']} non-2xx)", False))
            continue
        where = f"{e['scenario']} {e['tool']} cache {e.get('cache')}"
        if e["mode"] == "closed" and e["ratio"] is not None and SCENARIOS[e["scenario"]].read:
            if e.get("cache") == "on" and e["scenario"] in ("post", "list"):
                out.append((f"{where}: ≥ 3× baseline req/s ({e['ratio']:.2f}×)", e["ratio"] >= 3))
            if e.get("cache") == "off" and SCENARIOS[e["scenario"]].probe:
                out.append((f"{where}: {e['ratio']:.2f}× baseline req/s (a probe of the fixed cost, not one of "
                            "the issue's reads: not judged)", None))
            elif e.get("cache") == "off":
                out.append((f"{where}: ≥ 0.85× baseline req/s ({e['ratio']:.2f}×)", e["ratio"] >= 0.85))
        if e["mode"] == "open":
            limit = 25.0 if e["scenario"] == "mixed" else 10.0
            p99 = e["latency_ms"]["p99"]
            out.append((f"{where} at {e['rate']} req/s: p99 < {limit:g} ms ({p99:.2f} ms)", p99 < limit))
        if e["errors"] + e["non2xx"]:
            out.append((f"{where} {e['mode']} loop: zero errors ({e['errors']} + {e['non2xx']} non-2xx)", False))
    return out


def compare(old: dict, new: dict, threshold: float = 0.10) -> list[dict]:
    """Entries of both runs side by side; `regression` when req/s fell or p99 rose by more than `threshold`."""
    old_scale, new_scale = old["meta"].get("scale"), new["meta"].get("scale")
    before = {key(e): e for e in old["entries"] if _scale(e, old_scale) == old_scale}
    other_scale = old_scale != new_scale
    rows = []
    for e in new["entries"]:
        o = before.get(key(e)) if _scale(e, new_scale) == new_scale else None
        if o is None:
            continue
        rps = (e["rps"] - o["rps"]) / o["rps"] if o["rps"] else 0.0
        p99 = (e["latency_ms"]["p99"] - o["latency_ms"]["p99"]) / o["latency_ms"]["p99"] if o["latency_ms"]["p99"] else 0.0
        flags = []
        if e["mode"] == "closed" and rps < -threshold:
            flags.append(f"req/s {rps:+.0%}")
        if p99 > threshold and e["latency_ms"]["p99"] - o["latency_ms"]["p99"] > 0.5:  # ignore sub-0.5 ms noise
            flags.append(f"p99 {p99:+.0%}")
        if other_scale and SCENARIOS[e["scenario"]].read and o["latency_ms"]["p95"]:
            growth = e["latency_ms"]["p95"] / o["latency_ms"]["p95"]
            if growth > 1.5:
                flags.append(f"p95 ×{growth:.2f} across scales")
        rows.append({"key": key(e), "old": o, "new": e, "rps_change": rps, "p99_change": p99, "flags": flags})
    return rows


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _cpu(entry: dict) -> str:
    us = entry.get("cpu_us")
    if not us:
        return ""
    db = f"{us['db']:,.0f}" + (f" (+{us['db_background']:,.0f})" if us.get("db_background", 0) >= 0.5 else "")
    return " · ".join((f"{us['api']:,.0f}", db, f"{us['redis']:,.0f}", f"{us['tool']:,.0f}"))


def _gauge(readings: dict | None) -> str | None:
    """The machine's gauge around a run (perf/calibrate.py) in words, if it was taken."""
    readings = readings or {}
    between = [f"{r:,.0f}" for r in readings.get("between", []) if r]
    said = [f"{readings['before']:,.0f} req/s before"] if readings.get("before") else []
    said += [f"{' and '.join(between)} req/s between the cache passes"] if between else []
    said += [f"{readings['after']:,.0f} req/s after"] if readings.get("after") else []
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else (said[0] if said else None)


def _calibration(readings: dict | None) -> list[str]:
    said = _gauge(readings)
    return [] if said is None else [
        f"Machine: {said} the measurements on {METHOD} (perf/calibrate.py; "
        "compare absolute figures between runs only at like readings).", ""]


def markdown(report: dict, comparison: list[dict] | None = None) -> str:
    meta = report["meta"]
    lines = [f"# perf run {meta['started']}", "",
             " · ".join(f"{k}: {meta[k]}" for k in ("scale", "workers", "connections", "duration", "rate", "commit")
                        if meta.get(k) is not None), "",
             *_calibration(meta.get("calibration")),
             "CPU: microseconds of CPU per request of the target's own processes, PostgreSQL's client backends "
             "(+ its background processes), Redis and the load tool (perf/cpu.py; runs of our own stack only).", "",
             "| scenario | tool | target | posts | cache | loop | req/s | p50 ms | p95 ms | p99 ms | max ms "
             "| non-2xx | errors | ratio | CPU µs: api · db (+bg) · redis · tool | SLA |",
             "|---|---|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for e in report["entries"]:
        scale = _scale(e, meta.get("scale"))
        loop = "closed" if e["mode"] == "closed" else f"open {e['rate']}/s"
        cache = e.get("cache") or (f"beside {e['beside']}" if e.get("beside") else "")
        ratio = "" if e.get("ratio") is None else f"{e['ratio']:.2f}× {'req/s' if e['mode'] == 'closed' else 'p99'}"
        verdict = "" if e["target"] != "service" else ("ok" if not e["sla"] else "MISS: " + "; ".join(e["sla"]))
        lat = e["latency_ms"]
        lines.append(f"| {e['scenario']} | {e['tool']} | {e['target']} | {f'{scale:,}' if scale else ''} "
                     f"| {cache} | {loop} "
                     f"| {e['rps']:,.0f} | {_ms(lat['p50'])} | {_ms(lat['p95'])} | {_ms(lat['p99'])} "
                     f"| {_ms(lat['max'])} | {e['non2xx']} | {e['errors']} | {ratio} | {_cpu(e)} | {verdict} |")
    if report.get("skipped"):
        lines += ["", "Not measured:", ""]
        lines += [f"- {s['scenario']} on {s['target']}: {s['reason']}" for s in report["skipped"]]
    if report.get("goals"):
        lines += ["", "Targets of the perf issue (reported, not enforced):", ""]
        lines += [f"- {text}" if ok is None else f"- [{'x' if ok else ' '}] {text}" for text, ok in report["goals"]]
    if comparison is not None:
        then = _gauge(report.get("compared_calibration"))
        lines += ["", f"Compared with {report.get('compared_with')}" + (f" (its machine: {then})" if then else "") + ":", "",
                  "| scenario | tool | target | cache | loop | req/s before → now | p99 ms before → now | flags |",
                  "|---|---|---|---|---|--:|--:|---|"]
        for row in comparison:
            o, n = row["old"], row["new"]
            lines.append(f"| {' | '.join(str(k or '') for k in row['key'])} "
                         f"| {o['rps']:,.0f} → {n['rps']:,.0f} ({row['rps_change']:+.0%}) "
                         f"| {_ms(o['latency_ms']['p99'])} → {_ms(n['latency_ms']['p99'])} ({row['p99_change']:+.0%}) "
                         f"| {'REGRESSION: ' + ', '.join(row['flags']) if row['flags'] else ''} |")
    return "\n".join(lines) + "\n"


def finish(report: dict, folder: Path, old: dict | None = None, threshold: float = 0.10) -> tuple[int, list[dict]]:
    """Judge, write report.json and report.md; returns (misses, regressions)."""
    scale = report["meta"].get("scale")
    add_ratios(report["entries"], scale)
    for e in report["entries"]:
        e["sla"] = sla(e)
    report["goals"] = goals(report["entries"], scale)
    comparison = compare(old, report, threshold) if old else None
    if old:
        report["compared_calibration"] = old["meta"].get("calibration")
    regressions = [r for r in comparison or [] if r["flags"]]
    report["regressions"] = [{"key": list(r["key"]), "flags": r["flags"]} for r in regressions]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "report.md").write_text(markdown(report, comparison))
    return sum(1 for e in report["entries"] if e["sla"]), regressions
