"""`serve --workers N`: N API processes on one port (SO_REUSEPORT) under a small supervisor.

The parent (`python -m server serve`) starts any embedded servers and applies migrations once, then
starts N children (`python -m server.serve`) that only serve. Each child binds its own listening socket
with SO_REUSEPORT, so the kernel spreads new connections over them and no process hands sockets to
another. The supervisor itself (signals, reloads, exit codes) is server/supervisor.py.
"""

from __future__ import annotations

import logging
import os
import sys

import asyncpg
import uvloop

from .config import Config
from .supervisor import Supervisor

log = logging.getLogger("server.serve")

# Connections kept free of the API pools for migrations, the outbox worker, psql and the perf runner.
RESERVED_CONNECTIONS = 10


def run_one(config: Config, reuse_port: bool = False, ready_fd: int | None = None) -> None:
    """Serve in this process until SIGINT or SIGTERM, then stop gracefully (server/runner.py)."""
    from .runner import serve

    uvloop.run(serve(config, reuse_port=reuse_port, ready_fd=ready_fd))


def pool_sizes(config: Config, max_connections: int, reserved_by_server: int) -> tuple[int, int]:
    """(min, max) pool size per process: PG_POOL_MAX, lowered so that N pools fit in the server's limit.

    The budget is max_connections less the superuser-reserved slots and RESERVED_CONNECTIONS.
    """
    budget = max_connections - reserved_by_server - RESERVED_CONNECTIONS
    per_process = min(config.pg_pool_max, budget // config.workers)
    if per_process < 1:
        raise RuntimeError(f"PostgreSQL allows {max_connections} connections: too few for {config.workers} workers")
    return min(config.pg_pool_min, per_process), per_process


async def _connection_limits(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return (int(await conn.fetchval("SHOW max_connections")),
                int(await conn.fetchval("SHOW superuser_reserved_connections")))
    finally:
        await conn.close()


def supervise(config: Config) -> int:
    """Run config.workers children until they exit; returns the exit code for the parent."""
    low, high = pool_sizes(config, *uvloop.run(_connection_limits(config.database_url)))
    if high < config.pg_pool_max:
        log.warning("PG_POOL_MAX lowered to %d per process so that %d pools fit the server", high, config.workers)
    # Children read the same environment; only what the parent decided is added to it (the embedded
    # servers' URLs and the pool split), so every other setting means the same in every process.
    env = {**os.environ, "DATABASE_URL": config.database_url, "REDIS_URL": config.redis_url,
           "HOST": config.host, "PORT": str(config.port), "WORKERS": "1",
           "PG_POOL_MIN": str(low), "PG_POOL_MAX": str(high), "LOG_FORMAT": config.effective_log_format}
    return Supervisor(config, env, (low, high)).run()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .logs import configure

    parser = argparse.ArgumentParser(prog="python -m server.serve", description="one API process of serve --workers N")
    parser.add_argument("--ready-fd", type=int, help="descriptor to write a line to once listening")
    args = parser.parse_args(argv)
    config = Config.from_env()
    configure(config.log_level, config.effective_log_format)
    run_one(config, reuse_port=True, ready_fd=args.ready_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
