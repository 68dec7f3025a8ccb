"""`serve --workers N`: N API processes on one port (SO_REUSEPORT) under a small supervisor.

The parent (`python -m server serve`) starts any embedded servers and applies migrations once, then
starts N children (`python -m server.serve`) that only serve. Each child binds its own listening socket
with SO_REUSEPORT, so the kernel spreads new connections over them and no process hands sockets to
another. SIGTERM or SIGINT to the parent is forwarded to every child; the parent exits once they all
have, 0 when they stopped on request, 1 when one died on its own (the others are stopped then too:
a process manager above restarts the whole unit).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import asyncpg
import uvloop

from .config import Config

log = logging.getLogger("server.serve")

# Connections kept free of the API pools for migrations, the outbox worker, psql and the perf runner.
RESERVED_CONNECTIONS = 10
STOP_TIMEOUT = 30.0  # seconds children get to finish their requests before they are killed


def run_one(config: Config, reuse_port: bool = False) -> None:
    """Serve in this process until SIGINT or SIGTERM (aiohttp's run_app handles both, exiting 0)."""
    from aiohttp import web

    from .app import create_app

    web.run_app(create_app(config), host=config.host, port=config.port, access_log=None, print=None,
                loop=uvloop.new_event_loop(), shutdown_timeout=10, reuse_port=reuse_port)


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
    stopping = False
    # Children get sessions of their own: a terminal's Ctrl-C reaches only us, and we stop them in order.
    # When the outbox worker runs in-process (the embedded mode), the first child alone runs it.
    procs = [subprocess.Popen([sys.executable, "-m", "server.serve"], start_new_session=True,
                              env={**env, "WORKER_IN_PROCESS": str(config.runs_worker_in_process and n == 0).lower()})
             for n in range(config.workers)]
    log.info("serving on http://%s:%d with %d processes (%s), pool %d-%d each", config.host, config.port,
             len(procs), ", ".join(str(p.pid) for p in procs), low, high)

    def stop(signum=None, frame=None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while any(p.poll() is None for p in procs):
            for proc in procs:
                if proc.poll() not in (None, 0) and not stopping:
                    log.error("worker %d exited with %d: stopping the others", proc.pid, proc.returncode)
                    code = 1
                    stop()
            time.sleep(0.2)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = 1
        if not stopping or any(p.returncode != 0 for p in procs):
            code = 1
    finally:
        stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def main() -> int:
    from .logs import configure

    config = Config.from_env()
    configure(config.log_level, config.effective_log_format)
    run_one(config, reuse_port=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
