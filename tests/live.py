"""A real `python -m server serve` process on a free loopback port, against the session's PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from server.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0  # seconds; migrations are already applied, so start-up takes about one


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def live_server(config, folder: Path, **env: str) -> Iterator[LiveServer]:
    """Serves until the block ends, then SIGTERM by pid (and SIGKILL if it lingers)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR",)}
    environ.update({"DATABASE_URL": config.database_url, "REDIS_URL": config.redis_url, "HOST": "127.0.0.1",
                    "PORT": str(port), "VAR_DIR": str(folder / "var"), "LOG_FORMAT": "json",
                    # The rate limiter must not turn a fuzzing run into 429s (tests/test_ratelimit.py tests it).
                    "RATE_LIMIT": "1000000/1m", "RATE_LIMIT_LOGIN": "1000000/1m", **env})
    log_path = folder / f"server-{port}.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=environ,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield LiveServer(url, process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
