"""Command line: serve | migrate | seed (later: worker, create-admin)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys

import uvloop

from . import seed, serve
from .config import Config, ConfigError
from .embedded import EmbeddedError, services
from .logs import configure
from .migrate import MigrationError, migrate
from .seed import SeedError

log = logging.getLogger("server")


def _serve(config: Config, args: argparse.Namespace) -> None:
    if args.workers is not None:
        config = dataclasses.replace(config, workers=args.workers)
        config.check()
    with services(config) as config:
        for name in uvloop.run(migrate(config.database_url)):
            log.info("migrated: %s", name)
        if config.workers > 1:  # N processes on one port; see server/serve.py
            if code := serve.supervise(config):
                sys.exit(code)
            return
        log.info("serving on http://%s:%d", config.host, config.port)
        serve.run_one(config)


def _migrate(config: Config, args: argparse.Namespace) -> None:
    with services(config) as config:
        applied = uvloop.run(migrate(config.database_url))
        print("\n".join(applied) if applied else "nothing to migrate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="The blog API service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP API (embedded PostgreSQL/Redis when their URLs are unset)")
    serve_cmd.add_argument("--workers", type=int, help="API processes sharing the port (default: WORKERS)")
    commands.add_parser("migrate", help="apply the SQL migrations that are missing")
    seed.add_arguments(commands.add_parser("seed", help="fill the core tables with generated data (COPY)"))
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure(config.log_level, config.effective_log_format)
    # Until the server's own handlers take over, SIGTERM unwinds like Ctrl-C so embedded servers stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        {"serve": _serve, "migrate": _migrate, "seed": seed.run}[args.command](config, args)
    except (EmbeddedError, MigrationError, SeedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
