"""The embedded mode: data survives restarts, root with an unreachable checkout, clear errors, `serve`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from server import embedded
from server.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent


async def _roundtrip(server: EmbeddedPostgres, sql: str):
    conn = await asyncpg.connect(server.start())
    try:
        if ";" in sql:
            return await conn.execute(sql)
        return await conn.fetch(sql)
    finally:
        await conn.close()
        server.stop()


async def test_cluster_data_survives_a_restart(tmp_root):
    server = EmbeddedPostgres(tmp_root / "restart" / "postgres", disposable=True)
    await _roundtrip(server, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
    assert [r["v"] for r in await _roundtrip(server, "SELECT v FROM kept")] == ["still here"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to the postgres user")
async def test_a_checkout_the_postgres_user_cannot_enter_keeps_its_cluster_in_var_tmp(tmp_root):
    private = tmp_root / "private"
    private.mkdir(mode=0o700)  # like /root: postgres cannot traverse it
    server = EmbeddedPostgres(private / "var" / "postgres", disposable=True)
    try:
        await _roundtrip(server, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")
        assert server.link.is_symlink()
        real = server.link.resolve()
        assert str(real).startswith("/var/tmp/blog-api-")
        assert [r["v"] for r in await _roundtrip(server, "SELECT v FROM kept")] == [1]
        assert (private.stat().st_mode & 0o777) == 0o700  # nothing above the checkout was opened up
    finally:
        shutil.rmtree(server.link.resolve().parent, ignore_errors=True)


def test_missing_binaries_give_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded, "find_pg_bindir", lambda: None)
    monkeypatch.setattr(embedded, "find_redis_server", lambda: None)
    with pytest.raises(EmbeddedError, match="install them .* or set DATABASE_URL"):
        EmbeddedPostgres(tmp_path / "pg")
    with pytest.raises(EmbeddedError, match="redis-server .* or set REDIS_URL"):
        EmbeddedRedis(tmp_path / "redis")


def _request(port: int, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _serve(var: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(VAR_DIR=str(var), PORT=str(port), LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited at start"
        try:
            if _request(port, "GET", "/readyz")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not become ready")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_serve_keeps_data_across_restarts_and_stops_its_servers(tmp_root):
    var, port = tmp_root / "serve-var", free_port()
    proc = _serve(var, port)
    status, created = _request(port, "POST", "/api/users",
                               {"email": "keep@example.com", "username": "keeper", "password": "correct horse"})
    assert status == 201
    postmaster = int((var / "postgres" / "postmaster.pid").read_text().split()[0])
    assert _stop(proc) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(postmaster, 0)  # the embedded PostgreSQL went down with it
    proc = _serve(var, port)
    try:
        assert _request(port, "GET", f"/api/users/{created['data']['id']}")[1]["data"]["username"] == "keeper"
    finally:
        assert _stop(proc) == 0
