"""`python -m perf run | layers | inprocess | compare`: the load-test runner's command line (see perf/README.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from .report import compare, markdown
from .runner import Options, Run
from .scenarios import SCENARIOS


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _scenarios(value: str) -> list[str]:
    names = _list(value)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    return names


def _env(value: str) -> tuple[str, str]:
    name, sep, setting = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return name, setting


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf", description="Load tests with wrk and autocannon.")
    commands = p.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure the scenarios and write perf/results/<time>/")
    d = Options()
    run.add_argument("--scenario", type=_scenarios, default=d.scenarios, dest="scenarios",
                     help=f"comma-separated, default all: {','.join(SCENARIOS)}")
    run.add_argument("--scale", type=lambda v: int(float(v)), default=d.scale, help="posts seeded (1e4 default, 1e6 big)")
    run.add_argument("--scale-check", type=lambda v: int(float(v)) or None, default=d.scale_check,
                     help="also measure every read on this many posts, each right after its --scale run, "
                          "and judge p95 growth (make perf: 1e6; 0 skips)")
    run.add_argument("--duration", type=float, default=d.duration, help="seconds per measurement (30)")
    run.add_argument("--slices", type=int, default=d.slices,
                     help="take each closed-loop measurement beside the baseline in this many alternating "
                          "slices (3; 1: one piece each)")
    run.add_argument("--warmup", type=float, default=d.warmup, help="seconds of unmeasured load first (5; 0 skips)")
    run.add_argument("--connections", type=int, default=d.connections, help="concurrent connections (100)")
    run.add_argument("--tool", type=_list, default=d.tools, dest="tools", help="wrk, autocannon or both (default)")
    run.add_argument("--rate", type=int, default=d.rate,
                     help="open loop: also run reads and mixed at this fixed req/s with autocannon (1000; 0 skips)")
    run.add_argument("--target", help="measure a running service at this URL instead of starting one")
    run.add_argument("--workers", type=int, default=d.workers, help="API processes (serve --workers N), 2")
    run.add_argument("--cache", type=_list, default=d.caches, dest="caches", help="on, off or on,off (default)")
    run.add_argument("--no-baseline", action="store_false", dest="baseline", help="skip the bare baseline")
    run.add_argument("--seed", type=int, default=d.seed, help="seed of the data set (1)")
    run.add_argument("--threads", type=int, default=d.threads, help="wrk threads (1: the other core serves)")
    run.add_argument("--pg-pool-max", type=int, dest="pool_max", help="PG_POOL_MAX per process, service and baseline")
    run.add_argument("--env", type=_env, action="append", default=[], help="KEY=VALUE for the service, repeatable")
    run.add_argument("--compare", type=Path, help="an earlier run's folder: set side by side, flag regressions")
    run.add_argument("--regression", type=float, default=d.regression, help="flag req/s drops or p99 rises past this (0.10)")
    run.add_argument("--fail-on-regression", action="store_true", help="exit 3 when --compare flags a regression")
    run.add_argument("--results", type=Path, default=d.results, help="where run folders go (perf/results)")
    run.add_argument("--var", type=Path, default=d.var, help="cached PostgreSQL cluster with seeded databases")
    run.add_argument("--posts", type=int, help="with --target: highest post id to ask for")
    run.add_argument("--users", type=int, help="with --target: seeded users (user<id>@example.com)")
    run.add_argument("--no-calibration", action="store_false", dest="calibrate",
                     help="skip the machine's gauge before and after the run (perf/calibrate.py)")
    layers = commands.add_parser("layers", help="CPU per request and req/s of the service against the baseline")
    layers.add_argument("paths", nargs="*", help="GET paths (default: a user, the tags, a post, the first list page)")
    layers.add_argument("--scale", type=lambda v: int(float(v)), default=d.scale)
    layers.add_argument("--workers", type=int, default=d.workers)
    layers.add_argument("--cache", choices=("on", "off"), default="off")
    layers.add_argument("--rounds", type=int, default=5, help="alternating samples per path (5)")
    layers.add_argument("--seconds", type=float, default=4.0, help="seconds per sample (4)")
    layers.add_argument("--connections", type=int, default=d.connections)
    layers.add_argument("--var", type=Path, default=d.var)
    layers.add_argument("--env", type=_env, action="append", default=[],
                        help="KEY=VALUE for the service, repeatable (ACCESS_LOG=true and LOG_LEVEL=info: what the "
                             "access log costs)")
    inproc = commands.add_parser("inprocess", help="CPU per request of both apps in one process, reads replayed")
    inproc.add_argument("paths", nargs="*", help="GET paths (default: as layers)")
    inproc.add_argument("--scale", type=lambda v: int(float(v)), default=d.scale)
    inproc.add_argument("--requests", type=int, default=10_000, help="requests per round and app (10,000)")
    inproc.add_argument("--rounds", type=int, default=7, help="alternating rounds per path (7)")
    inproc.add_argument("--var", type=Path, default=d.var)
    cmp = commands.add_parser("compare", help="print two finished runs side by side")
    cmp.add_argument("old", type=Path)
    cmp.add_argument("new", type=Path)
    cmp.add_argument("--regression", type=float, default=d.regression)
    return p


def _interrupted(signum: int, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # SIGTERM ends a run as Ctrl-C does: the stack's servers are stopped (by pid) on the way out. Without
    # this, SIGTERM to a run started in the background (where a shell ignores SIGINT) left them running.
    signal.signal(signal.SIGTERM, _interrupted)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "layers":
        from . import layers
        layers.run(args.paths or layers.DEFAULT_PATHS, scale=args.scale, workers=args.workers, cache=args.cache,
                   rounds=args.rounds, seconds=args.seconds, connections=args.connections, var=args.var,
                   env=dict(args.env))
        return 0
    if args.command == "inprocess":
        from . import inprocess, layers
        inprocess.run(args.paths or layers.DEFAULT_PATHS, scale=args.scale, requests=args.requests,
                      rounds=args.rounds, var=args.var)
        return 0
    if args.command == "compare":
        old, new = (json.loads((f / "report.json").read_text()) for f in (args.old, args.new))
        rows = compare(old, new, args.regression)
        print(markdown({**new, "compared_with": str(args.old),
                        "compared_calibration": old["meta"].get("calibration")}, rows))
        return 3 if any(r["flags"] for r in rows) else 0
    bad = [t for t in args.tools if t not in ("wrk", "autocannon")] + [c for c in args.caches if c not in ("on", "off")]
    if bad:
        print(f"unknown --tool or --cache value(s): {bad}", file=sys.stderr)
        return 2
    if args.slices < 1:
        print("--slices must be 1 or more", file=sys.stderr)
        return 2
    if args.target and args.scale_check:
        print("--scale-check needs the runner's own stack: it cannot be used with --target", file=sys.stderr)
        return 2
    options = {k: v for k, v in vars(args).items() if k != "command"}
    options["env"] = dict(options["env"])
    return Run(Options(**options)).execute()


if __name__ == "__main__":
    sys.exit(main())
