"""Real processes for the fault and limit tests: the API (`serve`), the outbox worker, their memory.

Everything starts on a free loopback port, logs to a file of the test's, and is stopped by its pid.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from server.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def raise_nofile(wanted: int) -> None:
    """Raise this process's descriptor limit (children inherit it) towards `wanted`, within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def service_env(database_url: str, redis_url: str, **extra) -> dict[str, str]:
    """The environment of an API or worker process: the given servers, limits out of the way of load."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OUTBOX_", "SMTP_", "MAIL_", "PG_", "REDIS_", "RATE_", "MAX_", "WORKER"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, LOG_LEVEL="warning", LOG_FORMAT="json",
               RATE_LIMIT="1000000000/1m", RATE_LIMIT_LOGIN="1000000000/1m", ACCESS_LOG="false")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """A child process of the test, its output in a log file, stopped by pid whatever happens."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.args, self.env = args, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, *self.args], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process must run to hear SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []


class Api(Process):
    """`python -m server serve [--workers N]` on a free port."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = free_port()
        args = ["-m", "server", "serve"] + (["--workers", str(workers)] if workers > 1 else [])
        super().__init__(args, {**env, "PORT": str(self.port)}, log)
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Api:
        super().start()
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "the API exited at start:\n" + "\n".join(self.lines()[-20:])
            if self.workers == 1 or len(children(self.pid)) >= self.workers:
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                        if response.status == 200:
                            return self
                except OSError:
                    pass
            assert time.monotonic() < deadline, "the API did not answer in time:\n" + "\n".join(self.lines()[-20:])
            time.sleep(0.05)


class Worker(Process):
    """`python -m server worker`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["-m", "server", "worker"], env, log)
