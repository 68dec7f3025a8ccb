"""Graceful stop, zero-downtime reload and slow clients, against real `python -m server serve` processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.faultkit import Api, children, rss_mib, service_env
from tests.loadgen import Load, summary

GET = b"GET /api/posts?limit=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _env(base_config, **extra) -> dict[str, str]:
    return service_env(base_config.database_url, base_config.redis_url, LOG_LEVEL="info", **extra)


def _read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str]]:
    """One HTTP answer from a keep-alive connection: (status, headers); (0, {}) if it was closed."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = _parse_head(head)
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return status, headers


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {name.strip().lower(): value.strip() for name, value in fields}


@pytest.fixture
def connect():
    """Connections of the test, all closed at its end."""
    opened: list[socket.socket] = []

    def open_one(port: int) -> socket.socket:
        opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        return opened[-1]

    yield open_one
    for sock in opened:
        sock.close()


def _unexpected_eofs(pg_server) -> int:
    """Client connections PostgreSQL saw vanish without a goodbye (a pool not closed)."""
    log = Path(pg_server.link) / "server.log"
    return log.read_text(errors="replace").count("unexpected EOF on client connection")


async def _token(url: str) -> str:
    name = f"sd{time.monotonic_ns() % 10**10}"
    async with aiohttp.ClientSession() as session:
        body = {"email": f"{name}@example.com", "username": name, "password": "correct horse"}
        async with session.post(url + "/api/users", json=body) as response:
            assert response.status == 201
        async with session.post(url + "/api/auth/login", json={"email": body["email"], "password": body["password"]}) as r:
            return (await r.json())["data"]["accessToken"]


async def test_sigterm_finishes_requests_in_flight_closes_pools_and_exits_0(base_config, pg_server, tmp_path,
                                                                             connect):
    """Requests held in PostgreSQL (behind a table lock) when SIGTERM arrives: the process stops
    accepting at once, answers them when the lock goes, with `Connection: close`, closes its pools and
    exits 0; PostgreSQL sees every connection of it end properly."""
    api = Api(_env(base_config, SHUTDOWN_TIMEOUT=10), tmp_path / "api.log").start()
    token = await _token(api.url)
    eofs = _unexpected_eofs(pg_server)
    lock = await asyncpg.connect(base_config.database_url)
    try:
        async with aiohttp.ClientSession() as session:
            transaction = lock.transaction()
            await transaction.start()
            await lock.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            held = [asyncio.create_task(session.get(api.url + "/api/users/me", headers={"Authorization": f"Bearer {token}"}))
                    for _ in range(5)]
            await asyncio.sleep(0.5)  # all five wait for the lock inside PostgreSQL
            api.signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert api.proc.poll() is None  # still draining
            with pytest.raises(ConnectionRefusedError):
                connect(api.port)
            await transaction.rollback()
            answers = await asyncio.gather(*held)
            assert [r.status for r in answers] == [200] * 5
            assert all(r.headers["Connection"] == "close" for r in answers)
        assert await asyncio.to_thread(api.wait, 15) == 0
    finally:
        await lock.close()
        api.stop()
    await asyncio.sleep(0.2)
    assert _unexpected_eofs(pg_server) == eofs
    assert any('"stopped"' in line for line in api.lines())


def test_sigterm_serves_requests_already_sent_and_connections_not_yet_accepted(base_config, tmp_path, connect):
    """Frozen (SIGSTOP) while requests arrive on idle keep-alive connections and on new connections the
    kernel queues but the process has not accepted: after SIGTERM and SIGCONT every one is answered.
    (aiohttp's own shutdown reset the queued connections and dropped data read after its signal.)"""
    api = Api(_env(base_config), tmp_path / "api.log").start()
    try:
        idle = [connect(api.port) for _ in range(5)]
        for sock in idle:
            sock.sendall(GET)
            assert _read_answer(sock)[0] == 200
        api.signal(signal.SIGSTOP)
        fresh = [connect(api.port) for _ in range(5)]
        for sock in idle + fresh:
            sock.sendall(GET)
        api.signal(signal.SIGTERM)
        time.sleep(0.1)
        api.signal(signal.SIGCONT)
        answers = [_read_answer(sock) for sock in idle + fresh]
        assert [status for status, _ in answers] == [200] * 10
        assert all(headers["connection"] == "close" for _, headers in answers)
        assert api.wait(15) == 0
    finally:
        api.stop()


async def test_shutdown_timeout_bounds_the_drain(base_config, tmp_path):
    """A request still running SHUTDOWN_TIMEOUT after SIGTERM is cancelled; the process exits 0 then."""
    api = Api(_env(base_config, SHUTDOWN_TIMEOUT=1), tmp_path / "api.log").start()
    token = await _token(api.url)
    lock = await asyncpg.connect(base_config.database_url)
    try:
        async with aiohttp.ClientSession() as session, lock.transaction():
            await lock.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            held = asyncio.create_task(session.get(api.url + "/api/users/me", headers={"Authorization": f"Bearer {token}"}))
            await asyncio.sleep(0.5)
            signalled = time.monotonic()
            api.signal(signal.SIGTERM)
            assert await asyncio.to_thread(api.wait, 15) == 0
            assert time.monotonic() - signalled < 4
            with pytest.raises(aiohttp.ClientError):
                await held
    finally:
        await lock.close()
        api.stop()


async def test_sighup_reloads_every_process_without_a_failed_request(base_config, tmp_path):
    """`serve --workers 2` under a steady load: SIGHUP starts two new processes, and once they listen the
    old ones drain and exit. Not one request fails, before, during or after; every write is kept."""
    api = Api(_env(base_config), tmp_path / "api.log", workers=2).start()
    try:
        old = set(children(api.pid))
        async with Load(api.url, rate=80) as load:
            load.start()
            await asyncio.sleep(1.0)
            api.signal(signal.SIGHUP)
            started = time.monotonic()
            while (set(children(api.pid)) & old or len(children(api.pid)) < 2) and time.monotonic() - started < 60:
                await asyncio.sleep(0.1)
            new = set(children(api.pid))
            await asyncio.sleep(1.0)
            await load.stop()
        lost = await load.ledger.verify(base_config.database_url)
        assert len(new) == 2 and not new & old, (old, new)
        failed = [c for c in load.calls if not c.ok]
        assert not failed, summary(failed)
        assert not lost
        assert len(load.calls) > 100
        api.signal(signal.SIGTERM)
        assert await asyncio.to_thread(api.wait, 20) == 0
    finally:
        api.stop()
    assert any("reload:" in line and "drain" in line for line in api.lines()), api.lines()[-10:]


def test_slow_clients_are_cut_off(base_config, tmp_path, connect):
    """HEADER_TIMEOUT and BODY_TIMEOUT (1 s here): a connection that sends nothing, or a head byte by
    byte, is closed without an answer; a body that stops coming is answered 408 and closed. An idle
    keep-alive connection between two requests is not a slow client. 500 silent connections all go."""
    api = Api(_env(base_config, HEADER_TIMEOUT=1, BODY_TIMEOUT=1), tmp_path / "api.log").start()
    try:
        silent = connect(api.port)
        started = time.monotonic()
        assert _read_answer(silent) == (0, {}) and 0.9 < time.monotonic() - started < 3

        trickle = connect(api.port)
        started = time.monotonic()
        closed = None
        for byte in GET[:-4]:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            time.sleep(0.1)
        assert closed is not None and closed < 3  # activity does not extend the head's deadline

        body = connect(api.port)
        body.sendall(b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"email\": ")
        started = time.monotonic()
        status, headers = _read_answer(body)
        assert status == 408 and headers["connection"] == "close" and time.monotonic() - started < 3

        keep = connect(api.port)
        keep.sendall(GET)
        assert _read_answer(keep)[0] == 200
        time.sleep(2)  # idle past HEADER_TIMEOUT: the keep-alive timer governs this, not the head's
        keep.sendall(GET)
        assert _read_answer(keep)[0] == 200

        before = rss_mib(api.pid)
        many = [connect(api.port) for _ in range(500)]
        time.sleep(2)
        assert all(_read_answer(sock, timeout=2) == (0, {}) for sock in many)
        assert rss_mib(api.pid) - before < 20
        lines = [json.loads(line) for line in api.lines() if line.startswith("{")]
        assert not [line for line in lines if line["level"] == "error"]
    finally:
        api.stop()


def _whole_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """The one answer before the server closes the connection: (status, headers, JSON body)."""
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return *_parse_head(head), json.loads(body)


def test_answers_outside_the_request_path_keep_the_envelope_and_hide_versions(base_config, tmp_path, connect):
    """The 408, the parser's refusals and a request target no route can take (`OPTIONS *`) are answered
    by the connection, not the request path: the same envelope and header fields, no aiohttp version."""
    api = Api(_env(base_config, BODY_TIMEOUT=0.5), tmp_path / "api.log").start()
    try:
        sent = {
            (408, "REQUEST_TIMEOUT"): b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      b"X-Request-Id: stalled-1\r\nContent-Length: 10\r\n\r\n{",
            (400, "VALIDATION_ERROR"): b"NOT HTTP AT ALL\r\n\r\n",
            (404, "NOT_FOUND"): b"OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Request-Id: asterisk-1\r\nConnection: close\r\n\r\n",
        }
        for (status, code), request in sent.items():
            with connect(api.port) as sock:
                sock.sendall(request)
                got, headers, body = _whole_answer(sock)
            assert (got, body["error"]["code"]) == (status, code)
            assert body["error"]["requestId"] == headers["x-request-id"]
            if b"X-Request-Id" in request:  # the client's id, echoed as on every answer
                assert headers["x-request-id"] == request.split(b"X-Request-Id: ")[1].split(b"\r\n")[0].decode()
            assert headers["server"] == "blog-api" and headers["x-content-type-options"] == "nosniff"
            if status == 408:
                assert body["error"]["message"] == "The request body did not arrive within 0.5 s"
        with urllib.request.urlopen(api.url + "/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        api.stop()


def test_100_continue_only_when_the_body_is_read(base_config, tmp_path, connect):
    """A client that awaits `100 Continue` before its body (curl past 1 MiB) uploads nothing when the
    answer does not need the body: 401, or 413 for a declared length, at once and with `Connection: close`
    (not when the body came anyway). When the handler reads the body the 100 comes first, and from then
    on BODY_TIMEOUT runs."""
    api = Api(_env(base_config, BODY_TIMEOUT=0.5), tmp_path / "api.log").start()
    expect = b"Host: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
    try:
        refused = [  # the login body is read by the rate limiter, before the handler
            (401, b"/api/posts", b"1000"), (413, b"/api/users", b"2000000"), (413, b"/api/auth/login", b"2000000")]
        for status, path, length in refused:
            sock = connect(api.port)
            sock.sendall(b"POST " + path + b" HTTP/1.1\r\n" + expect + b"Content-Length: " + length + b"\r\n\r\n")
            got, headers = _read_answer(sock)
            assert (got, headers["connection"]) == (status, "close")
            sock.shutdown(socket.SHUT_WR)  # as curl closes; the server reads what comes, then closes too
            assert sock.recv(65536) == b""

        sock = connect(api.port)  # a client that sends its body without waiting: the connection stays
        last = GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        sock.sendall(b"POST /api/posts HTTP/1.1\r\n" + expect + b"Content-Length: 2\r\n\r\n{}" + last)
        data = b""
        while chunk := sock.recv(65536):  # both answers, however they arrive, until the server closes
            data += chunk
        status, headers = _parse_head(data.partition(b"\r\n\r\n")[0])
        assert status == 401 and "connection" not in headers
        assert data.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200 OK\r\n" in data

        body = json.dumps({"email": "wait@example.com", "username": "waiter", "password": "correct horse"})
        sock = connect(api.port)
        sock.sendall(b"POST /api/users HTTP/1.1\r\n" + expect + b"Content-Length: %d\r\n\r\n" % len(body))
        assert _read_answer(sock) == (100, {})
        sock.sendall(body.encode())
        status, headers = _read_answer(sock)
        assert status == 201 and "connection" not in headers  # kept alive

        sock.sendall(b"POST /api/users HTTP/1.1\r\n" + expect + b"Content-Length: 10\r\n\r\n")
        assert _read_answer(sock) == (100, {})
        started = time.monotonic()
        status, headers = _read_answer(sock)  # the body never comes
        assert (status, headers["connection"]) == (408, "close") and time.monotonic() - started < 3
    finally:
        api.stop()


def test_a_single_process_ignores_sighup(base_config, tmp_path):
    """Reloads are the supervisor's; a lone process must not die (undrained) of a stray SIGHUP."""
    api = Api(_env(base_config), tmp_path / "api.log").start()
    try:
        api.signal(signal.SIGHUP)
        time.sleep(0.3)
        with urllib.request.urlopen(api.url + "/healthz", timeout=5) as response:
            assert response.status == 200
        assert any("SIGHUP ignored" in line for line in api.lines())
        assert api.stop() == 0
    finally:
        api.stop()
