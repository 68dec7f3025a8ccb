"""The response cache: ETags and 304s, read-after-write on every instance, no stampede, no cross-principal
answers, and staying correct through a Redis outage."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from server.app import create_app
from server import cache as cache_module
from server.cache import CACHE, etag_of, matches
from server.redisdb import REDIS
from tests.conftest import actor


@pytest.fixture
async def two(aiohttp_client, config, db):
    """Two app instances sharing PostgreSQL and Redis, like two processes behind a load balancer."""
    return await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))


async def test_public_get_has_a_strong_etag_and_a_matching_request_gets_304(client, alice):
    first = await client.get(f"/api/users/{alice.id}")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        again = await client.get(f"/api/users/{alice.id}", headers={"If-None-Match": header})
        assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
        assert again.headers["X-Request-Id"]
    stale = await client.get(f"/api/users/{alice.id}", headers={"If-None-Match": '"something-else"'})
    assert stale.status == 200 and stale.headers["ETag"] == etag


async def test_etags_and_304s_also_without_the_cache(aiohttp_client, make_config, db):
    client = await aiohttp_client(create_app(make_config(cache_enabled=False)))
    me = await actor(client, db, "nocache")
    first = await client.get(f"/api/users/{me.id}")
    assert (await client.get(f"/api/users/{me.id}", headers={"If-None-Match": first.headers["ETag"]})).status == 304
    assert client.server.app[CACHE].hits == 0


async def test_the_second_read_is_a_hit_with_the_same_body(client, alice):
    cache = client.server.app[CACHE]
    bodies = [await (await client.get(f"/api/users/{alice.id}")).read() for _ in range(3)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert (cache.misses, cache.hits) == (1, 2)


async def test_one_entry_per_canonical_query_and_none_shared_between_queries(client, alice):
    """The query's order and an empty `?` do not make new entries; a different query is its own entry."""
    cache = client.server.app[CACHE]
    plain = await (await client.get("/api/posts")).read()
    assert await (await client.get("/api/posts?")).read() == plain
    assert (cache.misses, cache.hits) == (1, 1)
    one = await (await client.get("/api/posts?limit=5&page=2")).read()
    assert await (await client.get("/api/posts?page=2&limit=5")).read() == one
    assert (cache.misses, cache.hits) == (2, 2)
    assert (await (await client.get("/api/posts?limit=6&page=2")).json())["meta"]["limit"] == 6
    assert (cache.misses, cache.hits) == (3, 2)


async def test_a_write_on_one_instance_is_read_at_once_on_the_other(two, db):
    a, b = two
    ann = await actor(a, db, "ann")
    assert (await (await b.get(f"/api/users/{ann.id}")).json())["data"]["displayName"] == ""
    assert (await (await b.get(f"/api/users/{ann.id}")).json())["data"]["displayName"] == ""  # cached on b
    response = await a.patch(f"/api/users/{ann.id}", json={"displayName": "Ann"}, headers=ann.headers)
    assert response.status == 200
    assert (await (await b.get(f"/api/users/{ann.id}")).json())["data"]["displayName"] == "Ann"
    assert b.server.app[CACHE].hits >= 1


async def test_deleting_a_user_retires_their_cached_profile(two, db):
    a, b = two
    gone = await actor(a, db, "gone")
    assert (await b.get(f"/api/users/{gone.id}")).status == 200
    assert (await a.delete(f"/api/users/{gone.id}", headers=gone.headers)).status == 204
    assert (await b.get(f"/api/users/{gone.id}")).status == 404


async def test_a_cold_key_under_load_is_built_once_per_process(client, alice):
    cache = client.server.app[CACHE]
    responses = await asyncio.gather(*(client.get(f"/api/users/{alice.id}") for _ in range(40)))
    assert {r.status for r in responses} == {200}
    assert len({await r.read() for r in responses}) == 1
    assert cache.rebuilds == 1 and cache.waits + cache.hits == 39


async def test_owner_and_admin_views_are_never_served_to_anyone_else(client, db):
    """Randomised order of callers on one profile: each gets exactly the view meant for them."""
    import random

    alice, bob = await actor(client, db, "alice"), await actor(client, db, "bob")
    admin = await actor(client, db, "boss", role="admin")
    callers = [None, alice, bob, admin] * 10
    random.Random(7).shuffle(callers)
    for who in callers:
        response = await client.get(f"/api/users/{alice.id}", headers=who.headers if who else {})
        data = (await response.json())["data"]
        assert ("email" in data) is (who in (alice, admin)), who


def test_if_none_match_parsing():
    assert matches('"a", "b"', '"b"') and matches("*", '"x"') and matches('W/"x"', '"x"')
    assert not matches('"a"', '"b"') and not matches(None, '"b"') and not matches("", '"b"')


async def test_redis_outage_bypasses_the_cache_and_nothing_stale_survives_it(aiohttp_client, make_config, db,
                                                                           servers):
    """Redis freezes (SIGSTOP) with an entry in it, a write's version bump fails meanwhile, Redis thaws with
    the old entry intact: the writer's pending epoch bump retires it before anyone is served it."""
    own = servers()
    config = make_config(redis_url=own.url, redis_breaker_reset=0.2)
    writer, reader = await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))
    cat = await actor(writer, db, "cat")
    assert (await (await reader.get(f"/api/users/{cat.id}")).json())["data"]["bio"] == ""  # now cached
    os.kill(own.proc.pid, signal.SIGSTOP)
    try:
        response = await writer.patch(f"/api/users/{cat.id}", json={"bio": "changed"}, headers=cat.headers)
        assert response.status == 200
        # While Redis is frozen, reads bypass the cache and see the database.
        assert (await (await reader.get(f"/api/users/{cat.id}")).json())["data"]["bio"] == "changed"
        assert reader.server.app[CACHE].bypasses >= 1
    finally:
        os.kill(own.proc.pid, signal.SIGCONT)
    epoch_task = writer.server.app[CACHE]._epoch_task  # noqa: SLF001 - the pending bump under test
    await asyncio.wait_for(epoch_task, 10)
    for _ in range(20):  # across the reader's breaker closing again: never the frozen, stale entry
        response = await reader.get(f"/api/users/{cat.id}")
        assert (await response.json())["data"]["bio"] == "changed"
        await asyncio.sleep(0.05)
    assert reader.server.app[CACHE].hits >= 1  # and the cache serves again


async def _post(client, who, title="Hello", tags=("news",)) -> dict:
    response = await client.post("/api/posts", json={"title": title, "body": "Text", "tags": list(tags)},
                                 headers=who.headers)
    assert response.status == 201, await response.text()
    return (await response.json())["data"]


async def test_every_cached_view_of_posts_follows_writes_made_on_another_instance(two, db):
    """Warm every post view on b, write on a, and read each view on b at once."""
    a, b = two
    ann = await actor(a, db, "ann")
    post = await _post(a, ann)
    views = [f"/api/posts/{post['id']}", "/api/posts", "/api/posts?tag=news", f"/api/users/{ann.id}/posts",
             f"/api/posts/{post['id']}/comments", "/api/tags"]

    async def read_all():
        return {view: (await (await b.get(view)).json())["data"] for view in views}

    await read_all()
    await read_all()  # now served from b's cache
    hits = b.server.app[CACHE].hits
    assert hits >= len(views)

    # A new comment: the post, its comments, and the commentCount in every list.
    await a.post(f"/api/posts/{post['id']}/comments", json={"body": "First!"}, headers=ann.headers)
    seen = await read_all()
    assert seen[views[0]]["commentCount"] == 1 and seen[views[0]]["comments"][0]["body"] == "First!"
    assert seen[views[1]][0]["commentCount"] == 1 and seen[views[2]][0]["commentCount"] == 1
    assert seen[views[3]]["posts"][0]["commentCount"] == 1 and len(seen[views[4]]) == 1

    # The author's new displayName, inside every cached post view.
    await a.patch(f"/api/users/{ann.id}", json={"displayName": "Ann B."}, headers=ann.headers)
    seen = await read_all()
    assert seen[views[0]]["author"]["displayName"] == "Ann B."
    assert seen[views[0]]["comments"][0]["author"]["displayName"] == "Ann B."
    assert seen[views[1]][0]["author"]["displayName"] == "Ann B."
    assert seen[views[3]]["user"]["displayName"] == "Ann B."

    # Retagging moves the post between tag lists and the tag counts.
    await a.patch(f"/api/posts/{post['id']}", json={"tags": ["sports"]}, headers=ann.headers)
    seen = await read_all()
    assert seen[views[2]] == [] and seen[views[5]] == [{"name": "sports", "postCount": 1}]

    # Deleted: gone from every view.
    await a.delete(f"/api/posts/{post['id']}", headers=ann.headers)
    assert (await b.get(views[0])).status == 404
    seen = {view: await (await b.get(view)).json() for view in views[1:4]}
    assert seen[views[1]]["data"] == [] and seen[views[1]]["meta"]["total"] == 0


async def test_randomised_callers_on_cached_routes_get_the_answer_meant_for_them(client, db):
    """Anonymous, two users and an admin, in random order over every cached route: the public routes answer
    the same bytes to all, and a profile shows an email only to its owner and the admin."""
    import random

    alice, bob = await actor(client, db, "alice"), await actor(client, db, "bob")
    admin = await actor(client, db, "boss", role="admin")
    post = await _post(client, alice)
    await client.post(f"/api/posts/{post['id']}/comments", json={"body": "Hi"}, headers=bob.headers)
    public = [f"/api/posts/{post['id']}", "/api/posts", "/api/posts?tag=news", f"/api/users/{alice.id}/posts",
              f"/api/posts/{post['id']}/comments", "/api/comments/1", "/api/tags"]
    rng = random.Random(11)
    answers: dict[str, bytes] = {}
    for _ in range(120):
        who = rng.choice([None, alice, bob, admin])
        headers = who.headers if who else {}
        profile = rng.choice([alice, bob])
        response = await client.get(f"/api/users/{profile.id}", headers=headers)
        data = (await response.json())["data"]
        assert ("email" in data) is (who is profile or who is admin)
        if "email" in data:
            assert data["email"] == profile.user["email"]
        view = rng.choice(public)
        body = await (await client.get(view, headers=headers)).read()
        assert answers.setdefault(view, body) == body
        assert b"@example.com" not in body


async def test_a_held_copy_is_served_only_while_it_is_the_entry_in_redis(aiohttp_client, config, db,
                                                                         monkeypatch):
    """Each process keeps the bodies it served, but Redis still decides every hit: an entry rewritten in
    Redis (a rebuild after expiry, once the database changed behind the API's back) or gone from it is
    never answered from the copy."""
    monkeypatch.setattr(cache_module, "BUILT_GRACE", 0.05)  # a build's own grace is not under test here
    client = await aiohttp_client(create_app(config))
    app = client.server.app
    cat = await actor(client, db, "cat")
    path = f"/api/users/{cat.id}"
    first = await (await client.get(path)).read()
    assert await (await client.get(path)).read() == first
    assert app[CACHE].hits == 1
    redis = app[REDIS]
    [key] = [key async for key in redis.scan_iter("c:*")]
    other = b'{"data": "rebuilt elsewhere"}'
    await redis.set(key, etag_of(other) + other)
    response = await client.get(path)
    assert await response.read() == other and response.headers["ETag"] == etag_of(other).decode()
    await db.execute("UPDATE users SET bio = 'changed behind the API' WHERE id = $1", cat.id)
    await redis.delete(key)
    await asyncio.sleep(0.1)
    assert (await (await client.get(path)).json())["data"]["bio"] == "changed behind the API"


async def test_held_copies_stay_within_their_byte_budget(aiohttp_client, config, db, monkeypatch):
    monkeypatch.setattr(cache_module, "HELD_BYTES", 600)
    client = await aiohttp_client(create_app(config))
    cache = client.server.app[CACHE]
    people = [await actor(client, db, f"person{i}") for i in range(6)]
    for who in people:
        for _ in range(2):
            assert (await client.get(f"/api/users/{who.id}")).status == 200
    assert 0 < cache._held_bytes <= 600  # noqa: SLF001 - the bound under test
    assert cache._held_bytes == sum(len(body) for _, _, body in cache._held.values())  # noqa: SLF001
    kept = list(cache._held)  # noqa: SLF001
    assert 0 < len(kept) < len(people)  # the oldest copies were forgotten, the newest kept in order
    assert kept == [f"c:user:{who.id}?" for who in people[-len(kept):]]
    again = await client.get(f"/api/users/{people[0].id}")
    assert (await again.json())["data"]["id"] == people[0].id


async def test_a_view_retired_faster_than_it_is_read_skips_the_cache_fresh_and_comes_back(client, db,
                                                                                         monkeypatch):
    """A comment before every read of the list: each lookup finds the list retired, so after a window of
    misses the list is read from PostgreSQL (every answer still shows the latest commentCount); once the
    writes stop, the sampled lookups hit and the list is served from the cache again."""
    monkeypatch.setattr(cache_module, "UPTAKE_WINDOW", 8)
    cache = client.server.app[CACHE]
    ann = await actor(client, db, "ann")
    post = await _post(client, ann)
    for n in range(1, 25):
        written = await client.post(f"/api/posts/{post['id']}/comments", json={"body": f"#{n}"}, headers=ann.headers)
        assert written.status == 201
        response = await client.get("/api/posts")
        assert (await response.json())["data"][0]["commentCount"] == n
        assert response.headers["ETag"]
    assert cache.skips == 24 - 8 - 2  # skipping after 8 misses; 2 of the 16 reads since were sampled
    misses = cache.misses
    for _ in range(cache_module.SAMPLE * 8):  # a window of sampled lookups, of the entry the last one built
        assert (await client.get("/api/posts")).status == 200
    assert cache.misses == misses
    hits, skips = cache.hits, cache.skips
    for _ in range(10):
        assert (await client.get("/api/posts")).status == 200
    assert (cache.hits, cache.skips) == (hits + 10, skips)


async def test_a_read_mostly_view_never_skips_the_cache(client, db, monkeypatch):
    monkeypatch.setattr(cache_module, "UPTAKE_WINDOW", 8)
    cache = client.server.app[CACHE]
    ann = await actor(client, db, "ann")
    post = await _post(client, ann)
    for n in range(40):  # a write every fifth read: one miss to four hits
        if n % 5 == 0:
            await client.post(f"/api/posts/{post['id']}/comments", json={"body": "more"}, headers=ann.headers)
        assert (await client.get("/api/posts")).status == 200
    assert cache.skips == 0 and cache.hits == 32


async def test_only_writes_that_link_tags_retire_the_cached_tags(client, db):
    cache = client.server.app[CACHE]
    ann = await actor(client, db, "ann")
    post = await _post(client, ann)
    assert (await (await client.get("/api/tags")).json())["data"] == [{"name": "news", "postCount": 1}]
    await client.post(f"/api/posts/{post['id']}/comments", json={"body": "Hi"}, headers=ann.headers)
    hits = cache.hits
    assert (await (await client.get("/api/tags")).json())["data"] == [{"name": "news", "postCount": 1}]
    assert cache.hits == hits + 1
    await _post(client, ann, tags=("news", "sports"))
    assert (await (await client.get("/api/tags")).json())["data"] == [{"name": "news", "postCount": 2},
                                                                      {"name": "sports", "postCount": 1}]

    # A post without tags and a patch that does not give tags change no postCount: still a hit.
    await _post(client, ann, tags=())
    await client.patch(f"/api/posts/{post['id']}", json={"title": "Renamed"}, headers=ann.headers)
    hits = cache.hits
    assert (await (await client.get("/api/tags")).json())["data"] == [{"name": "news", "postCount": 2},
                                                                      {"name": "sports", "postCount": 1}]
    assert cache.hits == hits + 1
    # Untagging does.
    await client.patch(f"/api/posts/{post['id']}", json={"tags": []}, headers=ann.headers)
    assert (await (await client.get("/api/tags")).json())["data"] == [{"name": "news", "postCount": 1},
                                                                      {"name": "sports", "postCount": 1}]
