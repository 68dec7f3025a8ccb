"""`serve --workers N`: N processes answer on one port, each with its own socket; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from server.config import Config
from server.embedded import free_port
from server.serve import pool_sizes
from tests.faultkit import children

ROOT = Path(__file__).resolve().parent.parent


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets in LISTEN state on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status


def _start(base_config, **popen) -> tuple[subprocess.Popen, int]:
    """`serve --workers 2` on a free port, once both children listen; returns it and the port."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": base_config.database_url, "REDIS_URL": base_config.redis_url,
           "PORT": str(port), "LOG_LEVEL": "warning", "PG_POOL_MIN": "1", "PG_POOL_MAX": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--workers", "2"], cwd=ROOT, env=env, **popen)
    deadline = time.monotonic() + 30
    while len(_listening_inodes(port)) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            reason = "serve exited at start" if proc.poll() is not None else "two listening sockets did not appear"
            _stop(proc)
            pytest.fail(reason)
        time.sleep(0.1)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_two_workers_share_one_port_and_stop_together_on_sigterm(base_config):
    proc, port = _start(base_config)
    try:
        kids = children(proc.pid)
        assert len(kids) == 2
        listening = _listening_inodes(port)
        # SO_REUSEPORT: each child holds its own listening socket on the port; the parent holds none.
        owners = {pid: _socket_inodes(pid) & listening for pid in kids}
        assert all(len(held) == 1 for held in owners.values()) and set().union(*owners.values()) == listening
        assert not _socket_inodes(proc.pid) & listening
        assert all(_get(port, "/readyz") == 200 for _ in range(20))  # a new connection each time
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for pid in kids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        _stop(proc)


def test_ctrl_c_reaches_only_the_supervisor_and_workers_keep_its_session(base_config):
    """A terminal's Ctrl-C signals its foreground process group: the workers, each in a group of its own,
    are not in it, so only the supervisor hears it and stops them in order. They stay in the supervisor's
    session: with the kernel's autogroup scheduling (on by default) a session is a CPU-scheduling group,
    and a worker with a session of its own would be weighed against the whole of PostgreSQL as an equal."""
    proc, port = _start(base_config, process_group=0)  # a group of its own, as a terminal's job would be
    try:
        kids = children(proc.pid)
        assert len(kids) == 2
        for pid in kids:
            assert os.getpgid(pid) == pid
            assert os.getsid(pid) == os.getsid(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0  # every worker stopped on the supervisor's request and exited 0
        for pid in kids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        _stop(proc)


@pytest.mark.parametrize("workers, pool_max, limit, expected", [
    (1, 32, 300, (4, 32)),      # the configured pool fits
    (4, 32, 100, (4, 21)),      # (100 - 3 reserved - 10 kept free) // 4
    (8, 32, 60, (4, 5)),
    (40, 32, 60, (1, 1)),       # the minimum follows the maximum down
])
def test_pool_sizes_fit_the_servers_connection_limit(workers, pool_max, limit, expected):
    config = Config(workers=workers, pg_pool_max=pool_max, pg_pool_min=4)
    assert pool_sizes(config, limit, 3) == expected


def test_more_workers_than_connections_is_refused():
    with pytest.raises(RuntimeError, match="too few for 60 workers"):
        pool_sizes(Config(workers=60), 60, 3)
