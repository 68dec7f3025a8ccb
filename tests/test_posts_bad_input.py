"""Bad input to the posts, comments and tags routes: the contract's answer, never a 500, nothing changed."""

from __future__ import annotations

import orjson
import pytest

from server.inputs import encode_cursor
from tests.posts_support import create_comment, create_post

JSON = {"Content-Type": "application/json"}
GOOD = {"title": "A title", "body": "A body"}


def post(**changes) -> bytes:
    data = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


def raw(value) -> bytes:
    return orjson.dumps(value)


def cursor(*key) -> str:
    return encode_cursor(*key)


P, C = "{post}", "{comment}"
# (name, method, path, body, headers, status, code, fields in details)
CASES = [
    # creating a post
    ("missing fields", "POST", "/api/posts", b"{}", JSON, 400, "VALIDATION_ERROR", ["title", "body"]),
    ("empty title", "POST", "/api/posts", post(title=""), JSON, 400, "VALIDATION_ERROR", ["title"]),
    ("blank title", "POST", "/api/posts", post(title="   "), JSON, 400, "VALIDATION_ERROR", ["title"]),
    ("title of 201 code points", "POST", "/api/posts", post(title="é" * 201), JSON, 400, "VALIDATION_ERROR",
     ["title"]),
    ("newline in title", "POST", "/api/posts", post(title="one\ntwo"), JSON, 400, "VALIDATION_ERROR", ["title"]),
    ("null title", "POST", "/api/posts", post(title=None), JSON, 400, "VALIDATION_ERROR", ["title"]),
    ("number as title", "POST", "/api/posts", post(title=42), JSON, 400, "VALIDATION_ERROR", ["title"]),
    ("empty body", "POST", "/api/posts", post(body=""), JSON, 400, "VALIDATION_ERROR", ["body"]),
    ("body of 50,001 code points", "POST", "/api/posts", post(body="ü" * 50_001), JSON, 400, "VALIDATION_ERROR",
     ["body"]),
    ("control character in body", "POST", "/api/posts", post(body="bell \x07"), JSON, 400, "VALIDATION_ERROR",
     ["body"]),
    ("11 tags", "POST", "/api/posts", post(tags=[f"t{i}" for i in range(11)]), JSON, 400, "VALIDATION_ERROR",
     ["tags"]),
    ("over 100 tag entries", "POST", "/api/posts", post(tags=["same"] * 101), JSON, 400, "VALIDATION_ERROR",
     ["tags"]),
    ("tag with a space", "POST", "/api/posts", post(tags=["ok", "two words"]), JSON, 400, "VALIDATION_ERROR",
     ["tags[1]"]),
    ("tag with symbols", "POST", "/api/posts", post(tags=["c++", "ok", "a_b"]), JSON, 400, "VALIDATION_ERROR",
     ["tags[0]", "tags[2]"]),
    ("tag of 33 characters", "POST", "/api/posts", post(tags=["a" * 33]), JSON, 400, "VALIDATION_ERROR",
     ["tags[0]"]),
    ("blank tag", "POST", "/api/posts", post(tags=["   "]), JSON, 400, "VALIDATION_ERROR", ["tags[0]"]),
    ("non-ASCII tag", "POST", "/api/posts", post(tags=["ünïcode"]), JSON, 400, "VALIDATION_ERROR", ["tags[0]"]),
    ("number as tag", "POST", "/api/posts", post(tags=[5]), JSON, 400, "VALIDATION_ERROR", ["tags[0]"]),
    ("tags not an array", "POST", "/api/posts", post(tags="python"), JSON, 400, "VALIDATION_ERROR", ["tags"]),
    ("read-only id", "POST", "/api/posts", post(id=1), JSON, 400, "VALIDATION_ERROR", ["id"]),
    ("read-only authorId", "POST", "/api/posts", post(authorId=2), JSON, 400, "VALIDATION_ERROR", ["authorId"]),
    ("read-only createdAt", "POST", "/api/posts", post(createdAt="2020-01-01T00:00:00Z"), JSON, 400,
     "VALIDATION_ERROR", ["createdAt"]),
    ("read-only commentCount", "POST", "/api/posts", post(commentCount=3), JSON, 400, "VALIDATION_ERROR",
     ["commentCount"]),
    ("every field wrong", "POST", "/api/posts", raw({"title": "", "body": 1, "tags": ["x y"], "author": {}}), JSON,
     400, "VALIDATION_ERROR", ["title", "body", "tags[0]", "author"]),
    ("not json", "POST", "/api/posts", b'{"title":', JSON, 400, "MALFORMED_JSON", None),
    ("json array", "POST", "/api/posts", b"[]", JSON, 400, "MALFORMED_JSON", None),
    ("text content type", "POST", "/api/posts", post(), {"Content-Type": "text/plain"}, 415,
     "UNSUPPORTED_MEDIA_TYPE", None),
    # changing a post
    ("patch null title", "PATCH", f"/api/posts/{P}", raw({"title": None}), JSON, 400, "VALIDATION_ERROR", ["title"]),
    ("patch null tags", "PATCH", f"/api/posts/{P}", raw({"tags": None}), JSON, 400, "VALIDATION_ERROR", ["tags"]),
    ("patch empty body", "PATCH", f"/api/posts/{P}", raw({"body": ""}), JSON, 400, "VALIDATION_ERROR", ["body"]),
    ("patch 11 tags", "PATCH", f"/api/posts/{P}", raw({"tags": list("abcdefghijk")}), JSON, 400, "VALIDATION_ERROR",
     ["tags"]),
    ("patch the author", "PATCH", f"/api/posts/{P}", raw({"authorId": 3}), JSON, 400, "VALIDATION_ERROR",
     ["authorId"]),
    ("patch unknown post", "PATCH", "/api/posts/99999", raw({"title": "x"}), JSON, 404, "NOT_FOUND", None),
    # comments
    ("empty comment", "POST", f"/api/posts/{P}/comments", raw({"body": ""}), JSON, 400, "VALIDATION_ERROR",
     ["body"]),
    ("comment of 5,001 code points", "POST", f"/api/posts/{P}/comments", raw({"body": "ç" * 5001}), JSON, 400,
     "VALIDATION_ERROR", ["body"]),
    ("comment with postId", "POST", f"/api/posts/{P}/comments", raw({"body": "x", "postId": 1}), JSON, 400,
     "VALIDATION_ERROR", ["postId"]),
    ("comment without body", "POST", f"/api/posts/{P}/comments", raw({}), JSON, 400, "VALIDATION_ERROR", ["body"]),
    ("NUL in comment", "POST", f"/api/posts/{P}/comments", raw({"body": "a\x00b"}), JSON, 400, "VALIDATION_ERROR",
     ["body"]),
    ("comment on unknown post", "POST", "/api/posts/99999/comments", raw({"body": "x"}), JSON, 404, "NOT_FOUND",
     None),
    # query strings
    ("tag filter with a space", "GET", "/api/posts?tag=two%20words", None, {}, 400, "VALIDATION_ERROR", ["tag"]),
    ("empty tag filter", "GET", "/api/posts?tag=", None, {}, 400, "VALIDATION_ERROR", ["tag"]),
    ("long tag filter", "GET", "/api/posts?tag=" + "a" * 33, None, {}, 400, "VALIDATION_ERROR", ["tag"]),
    ("author zero", "GET", "/api/posts?author=0", None, {}, 400, "VALIDATION_ERROR", ["author"]),
    ("author word", "GET", "/api/posts?author=alice", None, {}, 400, "VALIDATION_ERROR", ["author"]),
    ("author past bigint", "GET", "/api/posts?author=9223372036854775808", None, {}, 400, "VALIDATION_ERROR",
     ["author"]),
    ("both filters wrong", "GET", "/api/posts?author=-1&tag=%25", None, {}, 400, "VALIDATION_ERROR",
     ["author", "tag"]),
    ("limit over 100", "GET", "/api/posts?limit=101", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("huge limit", "GET", "/api/posts?limit=99999999999999999999", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("page too deep", "GET", "/api/posts?page=501", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("page too deep by tag", "GET", "/api/posts?tag=x&page=101&limit=100", None, {}, 400, "VALIDATION_ERROR",
     ["page"]),
    ("garbage cursor", "GET", "/api/posts?cursor=%%%", None, {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("users' cursor", "GET", "/api/posts?cursor=" + cursor("u", 5), None, {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("cursor without timestamp", "GET", "/api/posts?cursor=" + cursor("p", 5), None, {}, 400, "VALIDATION_ERROR",
     ["cursor"]),
    ("cursor with a word for a time", "GET", "/api/posts?cursor=" + cursor("p", "yesterday", 5), None, {}, 400,
     "VALIDATION_ERROR", ["cursor"]),
    ("cursor with a local time", "GET", "/api/posts?cursor=" + cursor("p", "2024-01-01T00:00:00", 5), None, {}, 400,
     "VALIDATION_ERROR", ["cursor"]),
    ("cursor before year 1 in UTC", "GET", "/api/posts?cursor=" + cursor("p", "0001-01-01T00:00:00+14:00", 5), None,
     {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("cursor with id zero", "GET", "/api/posts?cursor=" + cursor("p", "2024-01-01T00:00:00Z", 0), None, {}, 400,
     "VALIDATION_ERROR", ["cursor"]),
    ("cursor with a float id", "GET", "/api/posts?cursor=" + cursor("p", "2024-01-01T00:00:00Z", 1.5), None, {}, 400,
     "VALIDATION_ERROR", ["cursor"]),
    ("cursor and page", "GET", "/api/posts?page=2&cursor=" + cursor("p", "2024-01-01T00:00:00Z", 1), None, {}, 400,
     "VALIDATION_ERROR", ["page"]),
    ("comments: forged cursor", "GET", f"/api/posts/{P}/comments?cursor=WyJjIl0", None, {}, 400, "VALIDATION_ERROR",
     ["cursor"]),
    ("comments: limit zero", "GET", f"/api/posts/{P}/comments?limit=0", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("user posts: forged cursor", "GET", "/api/users/1/posts?cursor=" + cursor("c", "2024-01-01T00:00:00Z", 1), None,
     {}, 400, "VALIDATION_ERROR", ["cursor"]),
    ("tags: limit zero", "GET", "/api/tags?limit=0", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("tags: limit words", "GET", "/api/tags?limit=all", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("limit with a trailing newline", "GET", "/api/posts?limit=5%0A", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    ("page with a sign", "GET", "/api/posts?page=%2B2", None, {}, 400, "VALIDATION_ERROR", ["page"]),
    ("limit with a digit group", "GET", "/api/tags?limit=1_0", None, {}, 400, "VALIDATION_ERROR", ["limit"]),
    # paths
    ("unknown post", "GET", "/api/posts/99999", None, {}, 404, "NOT_FOUND", None),
    ("post id zero", "GET", "/api/posts/0", None, {}, 404, "NOT_FOUND", None),
    ("post id word", "GET", "/api/posts/first", None, {}, 404, "NOT_FOUND", None),
    ("comment id past bigint", "GET", "/api/comments/9223372036854775808", None, {}, 404, "NOT_FOUND", None),
    ("PUT a post", "PUT", f"/api/posts/{P}", post(), JSON, 405, "METHOD_NOT_ALLOWED", None),
]


async def _rows(db):
    return [await db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("posts", "tags", "post_tags", "comments", "author_post_counts", "post_total_shards")]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code", "fields"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input_gets_the_contract_answer_and_changes_nothing(client, db, bob, method, path, body, headers,
                                                                      status, code, fields):
    existing = await create_post(client, bob, tags=["kept"])
    comment = await create_comment(client, bob, existing["id"])
    path = path.replace(P, str(existing["id"])).replace(C, str(comment["id"]))
    before = await _rows(db)
    kwargs = {"headers": {**headers, **bob.headers}}  # bob wrote the post: only the input is wrong
    if body is not None:
        kwargs["data"] = body
    response = await client.request(method, path, **kwargs)
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["requestId"] == response.headers["X-Request-Id"]
    if fields is None:
        assert "details" not in error
    else:
        assert sorted(d["field"] for d in error["details"]) == sorted(fields)
        assert all(d["message"] for d in error["details"])
    assert await _rows(db) == before
    assert await (await client.get(f"/api/posts/{existing['id']}")).json() == {
        **{"data": {**existing, "commentCount": 1,
                    "comments": [{k: v for k, v in comment.items() if k != "postId"}]}}}


async def test_too_deep_a_page_names_cursor(client, db):
    error = (await (await client.get("/api/posts?page=101&limit=100")).json())["error"]
    assert error["details"][0]["field"] == "page" and "cursor" in error["details"][0]["message"]


async def test_query_integer_messages_name_the_range_a_client_can_use(client, db):
    """`page` has no upper bound of its own (page × limit has), so its message is not the bigint's range."""
    for query, message in [("page=0", "must be a positive integer"),
                           ("limit=0", "must be an integer from 1 to 100")]:
        error = (await (await client.get(f"/api/posts?{query}")).json())["error"]
        assert error["details"] == [{"field": query.split("=")[0], "message": message}]


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25
