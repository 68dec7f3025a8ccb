"""Command line: serve | migrate (later: worker, seed, create-admin)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import uvloop

from .config import Config, ConfigError
from .embedded import EmbeddedError, services
from .logs import configure
from .migrate import MigrationError, migrate

log = logging.getLogger("server")


def _serve(config: Config, args: argparse.Namespace) -> None:
    from aiohttp import web

    from .app import create_app
    from .metrics import prepare_multiprocess

    # Several API processes share their metrics through files (server/metrics.py): a no-op for one.
    prepare_multiprocess(config)
    with services(config) as config:
        for name in uvloop.run(migrate(config.database_url)):
            log.info("migrated: %s", name)
        log.info("serving on http://%s:%d", config.host, config.port)
        web.run_app(create_app(config), host=config.host, port=config.port, access_log=None, print=None,
                    loop=uvloop.new_event_loop(), shutdown_timeout=10)


def _migrate(config: Config, args: argparse.Namespace) -> None:
    with services(config) as config:
        applied = uvloop.run(migrate(config.database_url))
        print("\n".join(applied) if applied else "nothing to migrate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="The blog API service.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP API (embedded PostgreSQL/Redis when their URLs are unset)")
    commands.add_parser("migrate", help="apply the SQL migrations that are missing")
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
        {"serve": _serve, "migrate": _migrate}[args.command](config, args)
    except (EmbeddedError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
