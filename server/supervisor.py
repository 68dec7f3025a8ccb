"""The supervisor of `serve --workers N`: starts, reloads and stops the API processes.

- Start: N children (`python -m server.serve --ready-fd FD`), each listening on the port with
  SO_REUSEPORT; each writes a line to its pipe once it listens.
- SIGHUP: a zero-downtime reload. Migrations are applied (`python -m server migrate`, from the code
  now on disk), then N new children start from that code; once every one of them listens, the old
  ones get SIGTERM and drain (server/runner.py): they stop listening, finish what they have and say
  `Connection: close`, while the kernel sends new connections to the new processes. If a new child
  fails to come up within READY_TIMEOUT, the new ones are stopped and the old ones keep serving.
- SIGTERM or SIGINT: forwarded to every child; children still running SHUTDOWN_TIMEOUT + KILL_MARGIN
  later are killed. The parent exits 0 when every child stopped on request with 0, else 1.
- A child that dies on its own with an error stops the others too (exit 1: a process manager above
  restarts the whole unit); one that exits 0 on its own (someone sent it SIGTERM) is not replaced.

Children get process groups of their own: a terminal's Ctrl-C (sent to its foreground group) reaches only
the supervisor, which stops them in order. They stay in its session: under the kernel's autogroup
scheduling (on by default) a session is a CPU-scheduling group, and a child with a session of its own
would weigh as much as the whole of PostgreSQL when both want more CPU; in one session the children share
one group, as they share a unit's cgroup under systemd.

When the outbox worker runs in-process (the embedded mode), the first child of each generation runs it
(two workers for a moment during a reload are fine: claims use SKIP LOCKED).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time

from .config import Config

log = logging.getLogger("server.supervisor")

READY_TIMEOUT = 60.0  # seconds new processes get to start listening before a reload is abandoned
KILL_MARGIN = 5.0  # seconds past SHUTDOWN_TIMEOUT before a stopping child is killed
TICK = 0.1  # seconds between two looks at the children


class Supervisor:
    def __init__(self, config: Config, env: dict[str, str], pool: tuple[int, int]) -> None:
        self.config, self.env, self.pool = config, env, pool
        self.current: list[subprocess.Popen] = []  # the generation that serves
        self.starting: list[subprocess.Popen] = []  # a generation not yet listening
        self.retiring: dict[subprocess.Popen, float] = {}  # stopping children and when they get killed
        self.stop_requested = self.reload_requested = False  # set by the signal handlers
        self.stopping = False
        self.code = 0

    def run(self) -> int:
        # The handlers only set flags: the loop below acts on them, so no list changes under its feet.
        handlers = {signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop, signal.SIGHUP: self._on_reload}
        previous = {s: signal.signal(s, h) for s, h in handlers.items()}
        try:
            self.current = self._start_generation() or []
            if self.current:
                log.info("serving on http://%s:%d with %d processes (%s), pool %d-%d each", self.config.host,
                         self.config.port, len(self.current), _pids(self.current), *self.pool)
            elif not self.stop_requested:
                log.error("the API processes did not start")
                self.code = 1
            while self.current or self.retiring:
                if self.stop_requested and not self.stopping:
                    self._stop()
                if self.reload_requested and not self.stopping:
                    self.reload_requested = False
                    self._reload_now()
                self._reap()
                time.sleep(TICK)
            if not self.stopping and not self.stop_requested:
                self.code = 1  # every child exited without being asked to
        finally:
            for proc in self.current + list(self.retiring):
                if proc.poll() is None:
                    proc.kill()
            for s, h in previous.items():
                signal.signal(s, h)
        return self.code

    def _on_stop(self, signum=None, frame=None) -> None:
        self.stop_requested = True

    def _on_reload(self, signum=None, frame=None) -> None:
        self.reload_requested = True

    def _stop(self) -> None:
        self.stopping = True
        for proc in self.current:
            self._retire(proc)
        self.current = []

    def _retire(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None and proc not in self.retiring:
            proc.send_signal(signal.SIGTERM)
            self.retiring[proc] = time.monotonic() + self.config.shutdown_timeout + KILL_MARGIN

    def _reap(self) -> None:
        for proc in list(self.current):
            if proc.poll() is None:
                continue
            self.current.remove(proc)
            _forget(proc.pid)
            if proc.returncode != 0:
                log.error("worker %d exited with %d: stopping the others", proc.pid, proc.returncode)
                self.code = 1
                self._stop()
            else:
                log.warning("worker %d exited on its own; %d left", proc.pid, len(self.current))
        for proc, kill_at in list(self.retiring.items()):
            if proc.poll() is not None:
                del self.retiring[proc]
                _forget(proc.pid)
                log.info("worker %d stopped with %d", proc.pid, proc.returncode)
                if proc.returncode != 0 and self.stopping:
                    self.code = 1
            elif time.monotonic() > kill_at:
                log.error("worker %d did not stop in time: killed", proc.pid)
                proc.kill()

    def _reload_now(self) -> None:
        log.info("reload: applying migrations, then starting %d new processes", self.config.workers)
        migrate = subprocess.run([sys.executable, "-m", "server", "migrate"], env=self.env, check=False,
                                 stdout=subprocess.DEVNULL)
        if migrate.returncode != 0:
            log.error("reload abandoned: migrate exited with %d; the running processes keep serving",
                      migrate.returncode)
            return
        new = self._start_generation()
        if not new:
            log.error("reload abandoned: the new processes did not start; the running processes keep serving")
            return
        old, self.current = self.current, new
        for proc in old:
            self._retire(proc)
        log.info("reload: %s serve, %s drain", _pids(new), _pids(old) or "none")

    def _start_generation(self) -> list[subprocess.Popen] | None:
        """config.workers new children, once every one listens; None (and they are stopped) otherwise."""
        pipes: dict[int, subprocess.Popen] = {}
        for n in range(self.config.workers):
            read, write = os.pipe()
            in_process = str(self.config.runs_worker_in_process and n == 0).lower()
            proc = subprocess.Popen([sys.executable, "-m", "server.serve", "--ready-fd", str(write)],
                                    pass_fds=(write,), process_group=0,
                                    env={**self.env, "WORKER_IN_PROCESS": in_process})
            os.close(write)
            pipes[read] = proc
            self.starting.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while pipes and time.monotonic() < deadline and not self.stop_requested:
                readable, _, _ = select.select(list(pipes), [], [], TICK)
                for fd in readable:
                    if not os.read(fd, 64):  # the child exited (or closed the pipe) before listening
                        return None
                    os.close(fd)
                    del pipes[fd]
            return None if pipes else list(self.starting)
        finally:
            for fd in pipes:
                os.close(fd)
            if pipes:
                for proc in self.starting:
                    self._retire(proc)
            self.starting = []


def _forget(pid: int) -> None:
    """A process that ended leaves the sums of /metrics: its live gauges go (server/metrics.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _pids(procs: list[subprocess.Popen]) -> str:
    return ", ".join(str(p.pid) for p in procs)
