"""Every bad input gets the contract's status and envelope, never a 500, and changes nothing stored."""

from __future__ import annotations

import gzip
import io

import orjson
import pytest

from tests.conftest import sign_up

GOOD = {"email": "new@example.com", "username": "newbie", "password": "correct horse"}
JSON = {"Content-Type": "application/json"}


def body(**changes):
    data = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


# (name, method, path, raw body, headers, status, code, fields in details)
CASES = [
    ("not json", "POST", "/api/users", b"{email:", JSON, 400, "MALFORMED_JSON", None),
    ("empty body", "POST", "/api/users", b"", JSON, 400, "MALFORMED_JSON", None),
    ("json array", "POST", "/api/users", b"[1, 2]", JSON, 400, "MALFORMED_JSON", None),
    ("json string", "POST", "/api/users", b'"user"', JSON, 400, "MALFORMED_JSON", None),
    ("json null", "POST", "/api/users", b"null", JSON, 400, "MALFORMED_JSON", None),
    ("invalid utf-8", "POST", "/api/users", b'{"email": "\xff"}', JSON, 400, "MALFORMED_JSON", None),
    ("lone surrogate", "POST", "/api/users", b'{"username": "\\ud800"}', JSON, 400, "MALFORMED_JSON", None),
    ("text content type", "POST", "/api/users", body(), {"Content-Type": "text/plain"}, 415,
     "UNSUPPORTED_MEDIA_TYPE", None),
    ("form content type", "POST", "/api/users", b"email=a", {"Content-Type": "application/x-www-form-urlencoded"},
     415, "UNSUPPORTED_MEDIA_TYPE", None),
    ("no content type", "POST", "/api/users", body(), {"Content-Type": ""}, 415, "UNSUPPORTED_MEDIA_TYPE", None),
    ("gzip body", "POST", "/api/users", gzip.compress(body()), {**JSON, "Content-Encoding": "gzip"}, 201, None,
     None),
    ("body over the limit", "POST", "/api/users", b'{"bio": "' + b"x" * (1024 * 1024) + b'"}', JSON, 413,
     "PAYLOAD_TOO_LARGE", None),
    ("missing fields", "POST", "/api/users", b"{}", JSON, 400, "VALIDATION_ERROR", ["email", "username", "password"]),
    ("null email", "POST", "/api/users", body(email=None), JSON, 400, "VALIDATION_ERROR", ["email"]),
    ("number as username", "POST", "/api/users", body(username=12345), JSON, 400, "VALIDATION_ERROR", ["username"]),
    ("bool as password", "POST", "/api/users", body(password=True), JSON, 400, "VALIDATION_ERROR", ["password"]),
    ("object as bio", "POST", "/api/users", body(bio={"a": 1}), JSON, 400, "VALIDATION_ERROR", ["bio"]),
    ("array as displayName", "POST", "/api/users", body(displayName=["x"]), JSON, 400, "VALIDATION_ERROR",
     ["displayName"]),
    ("bad email", "POST", "/api/users", body(email="not-an-email"), JSON, 400, "VALIDATION_ERROR", ["email"]),
    ("email with spaces", "POST", "/api/users", body(email=" a@example.com"), JSON, 400, "VALIDATION_ERROR", ["email"]),
    ("over-long email", "POST", "/api/users", body(email="a" * 250 + "@example.com"), JSON, 400, "VALIDATION_ERROR",
     ["email"]),
    ("short username", "POST", "/api/users", body(username="ab"), JSON, 400, "VALIDATION_ERROR", ["username"]),
    ("long username", "POST", "/api/users", body(username="a" * 33), JSON, 400, "VALIDATION_ERROR", ["username"]),
    ("username with space", "POST", "/api/users", body(username="new bie"), JSON, 400, "VALIDATION_ERROR",
     ["username"]),
    ("username not trimmed", "POST", "/api/users", body(username=" newbie"), JSON, 400, "VALIDATION_ERROR",
     ["username"]),
    ("username with a final newline", "POST", "/api/users", body(username="newbie\n"), JSON, 400,
     "VALIDATION_ERROR", ["username"]),
    ("unicode username", "POST", "/api/users", body(username="nëwbie"), JSON, 400, "VALIDATION_ERROR", ["username"]),
    ("empty password", "POST", "/api/users", body(password=""), JSON, 400, "VALIDATION_ERROR", ["password"]),
    ("short password", "POST", "/api/users", body(password="1234567"), JSON, 400, "VALIDATION_ERROR", ["password"]),
    ("long password", "POST", "/api/users", body(password="x" * 129), JSON, 400, "VALIDATION_ERROR", ["password"]),
    ("long displayName", "POST", "/api/users", body(displayName="é" * 65), JSON, 400, "VALIDATION_ERROR",
     ["displayName"]),
    ("control char in displayName", "POST", "/api/users", body(displayName="a\x07b"), JSON, 400, "VALIDATION_ERROR",
     ["displayName"]),
    ("newline in displayName", "POST", "/api/users", body(displayName="a\nb"), JSON, 400, "VALIDATION_ERROR",
     ["displayName"]),
    ("NUL in bio", "POST", "/api/users", body(bio="a\x00b"), JSON, 400, "VALIDATION_ERROR", ["bio"]),
    ("long bio", "POST", "/api/users", body(bio="b" * 1001), JSON, 400, "VALIDATION_ERROR", ["bio"]),
    ("privileged role", "POST", "/api/users", body(role="admin"), JSON, 400, "VALIDATION_ERROR", ["role"]),
    ("read-only id", "POST", "/api/users", body(id=7), JSON, 400, "VALIDATION_ERROR", ["id"]),
    ("read-only createdAt", "POST", "/api/users", body(createdAt="2020-01-01T00:00:00Z"), JSON, 400,
     "VALIDATION_ERROR", ["createdAt"]),
    ("snake_case alias", "POST", "/api/users", body(display_name="x"), JSON, 400, "VALIDATION_ERROR",
     ["display_name"]),
    ("every field wrong", "POST", "/api/users", orjson.dumps({"email": 1, "username": "a", "password": "p",
                                                              "bio": None, "extra": 1}),
     JSON, 400, "VALIDATION_ERROR", ["email", "username", "password", "bio", "extra"]),
    ("page zero", "GET", "/api/users?page=0", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("negative page", "GET", "/api/users?page=-1", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("fractional page", "GET", "/api/users?page=1.5", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("huge page", "GET", "/api/users?page=99999999999999999999999", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("too deep", "GET", "/api/users?page=501&limit=20", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("limit zero", "GET", "/api/users?limit=0", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("limit too big", "GET", "/api/users?limit=1000000000", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("limit words", "GET", "/api/users?limit=ten", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("limit twice", "GET", "/api/users?limit=5&limit=6", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("page and limit wrong", "GET", "/api/users?page=x&limit=y", None, {}, 400, "VALIDATION_ERROR", ["limit", "page"]),
    ("garbage cursor", "GET", "/api/users?cursor=%%%", None, {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("base64 non-json cursor", "GET", "/api/users?cursor=aGVsbG8", None, {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("cursor of another list", "GET", "/api/users?cursor=WyJwIiwxXQ", None, {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("cursor with negative id", "GET", "/api/users?cursor=WyJ1IiwtMV0", None, {}, 400, "VALIDATION_ERROR",
     ["cursor"]),
    ("cursor and page", "GET", "/api/users?cursor=WyJ1IiwxXQ&page=2", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("id zero", "GET", "/api/users/0", None, {}, 404, "NOT_FOUND", None),
    ("negative id", "GET", "/api/users/-1", None, {}, 404, "NOT_FOUND", None),
    ("word id", "GET", "/api/users/abc", None, {}, 404, "NOT_FOUND", None),
    ("fractional id", "GET", "/api/users/1.5", None, {}, 404, "NOT_FOUND", None),
    ("leading zero id", "GET", "/api/users/01", None, {}, 404, "NOT_FOUND", None),
    ("id past bigint", "GET", "/api/users/9223372036854775808", None, {}, 404, "NOT_FOUND", None),
    ("huge id", "GET", "/api/users/" + "9" * 40, None, {}, 404, "NOT_FOUND", None),
    ("wrong method", "DELETE", "/api/users", None, {}, 405, "METHOD_NOT_ALLOWED", None),
]


@pytest.mark.parametrize(("method", "path", "raw", "headers", "status", "code", "fields"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input_gets_the_contract_answer_and_changes_nothing(client, db, alice, method, path, raw, headers,
                                                                      status, code, fields):
    existing = await sign_up(client, "existing")
    headers = {**headers, **alice.headers}
    before = await db.fetch("SELECT * FROM users ORDER BY id")
    if raw is not None and len(raw) > 1024 * 1024:
        raw = io.BytesIO(raw)  # aiohttp warns about sending a large bytes body in one piece
    kwargs = {"data": raw, "headers": headers} if raw is not None else {"headers": headers}
    if headers.get("Content-Type") == "":
        kwargs["skip_auto_headers"] = ["Content-Type"]
        kwargs["headers"] = alice.headers
    response = await client.request(method, path, **kwargs)
    assert response.status == status, await response.text()
    if status == 201:  # the control case: a gzip-encoded body is decoded like any other
        return
    payload = await response.json()
    assert set(payload) == {"error"}
    error = payload["error"]
    assert error["code"] == code
    assert error["requestId"] == response.headers["X-Request-Id"]
    assert isinstance(error["message"], str) and error["message"]
    if fields is None:
        assert "details" not in error
    else:
        assert sorted(d["field"] for d in error["details"]) == sorted(fields)
        assert all(d["message"] for d in error["details"])
    assert await db.fetch("SELECT * FROM users ORDER BY id") == before
    assert (await client.get(f"/api/users/{existing['id']}")).status == 200


async def test_page_too_deep_message_names_cursor(client, alice):
    error = (await (await client.get("/api/users?page=101&limit=100", headers=alice.headers)).json())["error"]
    assert "cursor" in error["details"][0]["message"]
