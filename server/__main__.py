"""Command line: serve | migrate | create-admin | worker | redeliver | seed."""

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
from .metrics import prepare_multiprocess, remove_multiprocess_dir
from .migrate import MigrationError, migrate
from .seed import SeedError

log = logging.getLogger("server")


def _serve(config: Config, args: argparse.Namespace) -> None:
    # Decided before services() fills in the URLs: the embedded mode runs the outbox worker in-process.
    config = dataclasses.replace(config, worker_in_process=config.runs_worker_in_process)
    if args.workers is not None:
        config = dataclasses.replace(config, workers=args.workers)
        config.check()
    with services(config) as config:
        for name in uvloop.run(migrate(config.database_url)):
            log.info("migrated: %s", name)
        if config.workers > 1:  # N processes on one port; see server/serve.py
            metrics_dir = prepare_multiprocess(config)  # each /metrics adds up all of them: server/metrics.py
            try:
                code = serve.supervise(config)
            finally:
                remove_multiprocess_dir(metrics_dir, config)
            if code:
                sys.exit(code)
            return
        log.info("serving on http://%s:%d", config.host, config.port)
        serve.run_one(config)


def _migrate(config: Config, args: argparse.Namespace) -> None:
    with services(config) as config:
        applied = uvloop.run(migrate(config.database_url))
        print("\n".join(applied) if applied else "nothing to migrate")


def _create_admin(config: Config, args: argparse.Namespace) -> None:
    from .admin_cli import create_admin, read_password

    password = read_password()
    with services(config) as config:
        uvloop.run(migrate(config.database_url))
        user_id = uvloop.run(create_admin(config.database_url, args.email, args.username, password))
    print(f"admin {args.username} created with id {user_id}")


def _worker(config: Config, args: argparse.Namespace) -> None:
    from .worker import run_worker

    if config.embedded:
        raise EmbeddedError("the worker needs DATABASE_URL and REDIS_URL; in the embedded mode `serve` runs it")
    uvloop.run(run_worker(config))


def _redeliver(config: Config, args: argparse.Namespace) -> None:
    from .worker import redeliver_cli

    if bool(args.event_ids) == args.all:
        print("redeliver: give EVENT_ID... or --all", file=sys.stderr)
        raise SystemExit(2)
    with services(config) as config:
        if code := uvloop.run(redeliver_cli(config, args.event_ids, args.all)):
            raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="The blog API service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP API (embedded PostgreSQL/Redis when their URLs are unset)")
    serve_cmd.add_argument("--workers", type=int, help="API processes sharing the port (default: WORKERS)")
    commands.add_parser("migrate", help="apply the SQL migrations that are missing")
    admin = commands.add_parser("create-admin", help="create an admin (password from a prompt or ADMIN_PASSWORD)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--username", required=True)
    commands.add_parser("worker", help="deliver outbox events (email, the Redis Stream) until SIGTERM")
    redeliver = commands.add_parser("redeliver", help="put dead-letter events back in the outbox queue")
    redeliver.add_argument("event_ids", nargs="*", type=int, metavar="EVENT_ID")
    redeliver.add_argument("--all", action="store_true", help="every dead letter")
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
        {"serve": _serve, "migrate": _migrate, "create-admin": _create_admin, "worker": _worker,
         "redeliver": _redeliver, "seed": seed.run}[args.command](config, args)
    except (EmbeddedError, MigrationError, SeedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
