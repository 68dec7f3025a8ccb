"""What a run measures against: PostgreSQL with a cached seeded database, Redis, the service, the baseline."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import redis
import uvloop

from server.config import Config
from server.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from server.serve import pool_sizes

from .dataset import RUN_DB, Seeded, copy_database, dsn_of, prepare_database

log = logging.getLogger("perf.stack")
ROOT = Path(__file__).resolve().parent.parent
# Limits far above any load this machine can offer: the limiter runs (its Redis script and headers on
# every request, as in production) but never refuses.
RAISED_LIMIT = "1000000000/1m"
# Settings of every run's service beyond production's defaults: no access log (a line per request is
# the log pipeline's load, not the API's); `--env KEY=VALUE` adds more per run.
SERVICE_ENV: dict[str, str] = {"ACCESS_LOG": "false"}


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} at start")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM by pid, then SIGKILL to its process group (its own, see `start`) if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def start(args: list[str], env: dict[str, str], log_file) -> subprocess.Popen:
    """A server process in a session of its own. Under the kernel's autogroup scheduling (on by default) a
    session is one CPU-scheduling group, weighed as one against every other: the service's processes,
    the baseline's, PostgreSQL (server/embedded.py) and each load tool (tools.py) are one group each, so
    neither target shares its group with the tool measuring it, and both meet the same arrangement."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)


class Stack:
    """Own PostgreSQL (kept under `var_dir`, seeded databases cached) and a fresh Redis per run."""

    def __init__(self, var_dir: Path, tmp_dir: Path, workers: int, pool_max: int | None, logs: Path) -> None:
        self.var_dir, self.tmp_dir, self.workers, self.pool_max = var_dir, tmp_dir, workers, pool_max
        self.logs = logs  # the service's and the baseline's output, kept with the run (not committed)
        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.redis_url = ""
        self.limits = (100, 3)
        self.templates: dict[str, str] = {}  # run database -> the seeded database it is copied from
        self._procs: dict[str, subprocess.Popen] = {}  # base URL -> the process that started what serves it

    def __enter__(self) -> Stack:
        self.pg = EmbeddedPostgres(self.var_dir / "postgres")
        self.admin_dsn = self.pg.start()
        self.redis = EmbeddedRedis(self.tmp_dir / "redis", persist=False)
        self.redis_url = self.redis.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.redis:
            self.redis.stop()
        if self.pg:
            self.pg.stop()

    def seed(self, posts: int, seed: int, run_db: str = RUN_DB) -> Seeded:
        """`run_db` holds `posts` seeded posts; a second scale goes in a run database of its own."""
        seeded = uvloop.run(prepare_database(self.admin_dsn, posts, seed, run_db))
        self.templates[run_db], self.limits = seeded.template, seeded.limits
        return seeded

    def dsn(self, run_db: str = RUN_DB) -> str:
        return dsn_of(self.admin_dsn, run_db)

    def reset(self) -> None:
        """A fresh copy of the seeded rows: the writes of an earlier target do not reach the next one."""
        for run_db, template in self.templates.items():
            uvloop.run(copy_database(self.admin_dsn, template, run_db))
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushall()  # cached responses and rate-limit budgets of the earlier target
        finally:
            client.close()

    def pools(self) -> tuple[int, int]:
        """Per-process pool of both the service and the baseline: the service's own rule (server/serve.py)."""
        config = Config(workers=self.workers, **({"pg_pool_max": self.pool_max} if self.pool_max else {}))
        return pool_sizes(config, *self.limits)

    def _env(self, port: int, extra: dict[str, str], run_db: str = RUN_DB) -> dict[str, str]:
        low, high = self.pools()
        # Each run database has a Redis database of its own: the cache of one scale never answers the other.
        redis_url = self.redis_url.rsplit("/", 1)[0] + f"/{list(self.templates).index(run_db)}"
        return {**os.environ, "DATABASE_URL": self.dsn(run_db), "REDIS_URL": redis_url, "HOST": "127.0.0.1",
                "PORT": str(port), "LOG_LEVEL": "warning", "LOG_FORMAT": "json", "VAR_DIR": str(self.tmp_dir / "var"),
                "PG_POOL_MIN": str(low), "PG_POOL_MAX": str(high), **extra}

    def service_env(self, extra: dict[str, str], port: int, run_db: str = RUN_DB) -> dict[str, str]:
        """The service's environment: production's settings on this stack, with the run's raised limits."""
        return self._env(port, {"RATE_LIMIT": RAISED_LIMIT, "RATE_LIMIT_LOGIN": RAISED_LIMIT, **SERVICE_ENV, **extra},
                         run_db)

    def _procs_at(self, port: int, proc: subprocess.Popen) -> str:
        url = f"http://127.0.0.1:{port}"
        self._procs[url] = proc
        return url

    def root_pid(self, url: str) -> int:
        """The process that started what serves `url`: the service's supervisor or the baseline's launcher."""
        return self._procs[url].pid

    def serving_pids(self, url: str) -> list[int]:
        """The processes that answer `url`: the children of the service's supervisor or of the baseline's
        launcher."""
        pid = self.root_pid(url)
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    @contextlib.contextmanager
    def service(self, extra: dict[str, str], run_db: str = RUN_DB) -> Iterator[str]:
        """`python -m server serve --workers N` as in production, on `run_db`; yields its base URL."""
        port = free_port()
        env = self.service_env(extra, port, run_db)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"service-{port}.log", "ab") as log_file:
            proc = start(["-m", "server", "serve", "--workers", str(self.workers)], env, log_file)
        url = self._procs_at(port, proc)
        try:
            wait_ready(f"{url}/readyz", proc)
            yield url
        finally:
            self._procs.pop(url, None)
            if stop(proc) != 0:
                log.warning("the service exited with %s (log: %s)", proc.returncode, log_file.name)

    @contextlib.contextmanager
    def baseline(self) -> Iterator[tuple[str, dict]]:
        """N `perf.baseline` processes on one port (SO_REUSEPORT), children of one in a session of their own;
        yields its URL and what it serves."""
        port = free_port()
        env = self._env(port, {})
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"baseline-{port}.log", "ab") as log_file:
            proc = start(["-m", "perf.baseline", "--processes", str(self.workers)], env, log_file)
        url = self._procs_at(port, proc)
        try:
            wait_ready(f"{url}/_baseline", proc)
            with urllib.request.urlopen(f"{url}/_baseline", timeout=5) as response:
                served = json.loads(response.read())
            yield url, served
        finally:
            self._procs.pop(url, None)
            stop(proc)
