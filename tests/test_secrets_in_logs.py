"""Nothing secret reaches the logs: a real server at debug level, a run of requests full of secrets, a grep."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.parse
import urllib.request

import asyncpg
import pytest
import uvloop

from tests.live import live_server


def _call(url: str, method: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def _hashes(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row["password_hash"] for row in await conn.fetch("SELECT password_hash FROM users")]
    finally:
        await conn.close()


@pytest.mark.slow
def test_no_secret_is_ever_logged(base_config, tmp_root):
    dsn_password = urllib.parse.urlsplit(base_config.database_url).password
    assert dsn_password, "the test database's DSN should carry a password"
    secrets = {"DSN password": dsn_password}
    with live_server(base_config, tmp_root / "secrets-server", LOG_LEVEL="debug", LOG_FORMAT="json") as server:
        api = server.url + "/api"
        for i in range(3):
            password = f"Sekrit-sign-up-password-{i}"
            secrets[f"password {i}"] = password
            status, _ = _call(f"{api}/users", "POST", {"email": f"leak{i}@example.com", "username": f"leak_{i}",
                                                        "password": password, "bio": "hello"})
            assert status in (201, 409)
        status, tokens = _call(f"{api}/auth/login", "POST", {"email": "leak0@example.com", "password": secrets["password 0"]})
        assert status == 200, tokens
        access, refresh = tokens["data"]["accessToken"], tokens["data"]["refreshToken"]
        secrets.update({"access token": access, "refresh token": refresh})
        user_id = tokens["data"]["user"]["id"]
        fake = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.Zm9yZ2VkLXNpZ25hdHVyZS1zZWNyZXQ"
        secrets["forged bearer token"] = fake
        assert _call(f"{api}/users/me", "GET", token=access)[0] == 200
        assert _call(f"{api}/users/me", "GET", token=fake)[0] == 401
        assert _call(f"{api}/users", "GET", token="not-even-a-jwt-SECRET-ISH")[0] == 401
        secrets["malformed bearer token"] = "not-even-a-jwt-SECRET-ISH"
        assert _call(f"{api}/auth/login", "POST", {"email": "leak1@example.com", "password": "Wrong-password-xyz"})[0] == 401
        secrets["wrong password"] = "Wrong-password-xyz"
        new_password = "Changed-password-secret-9"
        secrets["new password"] = new_password
        status, _ = _call(f"{api}/users/{user_id}", "PATCH",
                          {"currentPassword": secrets["password 0"], "password": new_password}, token=access)
        assert status == 200
        status, rotated = _call(f"{api}/auth/refresh", "POST", {"refreshToken": refresh})
        assert status in (200, 401)  # the password change may have ended this session
        if status == 200:
            secrets["rotated refresh token"] = rotated["data"]["refreshToken"]
            secrets["rotated access token"] = rotated["data"]["accessToken"]
        assert _call(f"{api}/auth/refresh", "POST", {"refreshToken": refresh})[0] == 401  # reuse
        assert _call(f"{api}/auth/logout", "POST", {"refreshToken": refresh})[0] == 204
        assert _call(f"{api}/users", "POST", {"email": "x", "password": "Short-but-secret-1", "username": "x"})[0] == 400
        secrets["refused password"] = "Short-but-secret-1"
        for i, password_hash in enumerate(uvloop.run(_hashes(base_config.database_url))):
            secrets[f"hash {i}"] = password_hash
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(15)
    log = server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert sum(1 for line in lines if line.get("logger") == "server.access") >= 12, log[-3000:]
    assert not [line for line in lines if line["level"] == "error"], log[-3000:]
    leaked = [name for name, secret in secrets.items() if secret in log]
    assert not leaked, f"secrets in the log: {leaked}"
    assert "PRIVATE KEY" not in log
