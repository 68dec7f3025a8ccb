"""Posts: the newest-first lists (all, by author, by tag, a user's), one post, and create, patch, delete."""

from __future__ import annotations

from aiohttp import web

from .. import listing, outbox, responses
from ..cache import invalidate
from ..db import POOL, Q, transaction
from ..errors import REQUEST_ID, NotFound
from ..guards import caller, require_owner_or_admin
from ..inputs import Query, path_id, read_json
from ..retry import retrying
from ..schemas import PostCreate, PostPatch

# (by author, by tag) -> the list's statements by listing.mode(); each filter is a statement of its own.
_LISTS = {
    (False, False): {"first": Q.list_posts_first, "page": Q.list_posts_page, "after": Q.list_posts_after},
    (True, False): {"first": Q.list_posts_by_author_first, "page": Q.list_posts_by_author_page,
                    "after": Q.list_posts_by_author_after},
    (False, True): {"first": Q.list_posts_by_tag_first, "page": Q.list_posts_by_tag_page,
                    "after": Q.list_posts_by_tag_after},
    (True, True): {"first": Q.list_posts_by_author_tag_first, "page": Q.list_posts_by_author_tag_page,
                   "after": Q.list_posts_by_author_tag_after},
}
_USER_POSTS = {"first": Q.user_posts_first, "page": Q.user_posts_page, "after": Q.user_posts_after}


async def list_posts(request: web.Request) -> web.Response:
    query = Query(request)
    author = listing.id_filter(query, "author")
    tag = listing.tag_filter(query)
    page = listing.newest_first(query, listing.POSTS)
    query.check()
    sql = _LISTS[author is not None, tag is not None][listing.mode(page)]
    filters = [f for f in (author, tag) if f is not None]
    row = await request.app[POOL].fetchrow(sql, page.limit, *listing.position(page), *filters)
    return listing.page_response(row, page, listing.POSTS)


async def list_user_posts(request: web.Request) -> web.Response:
    """GET /api/users/{id}/posts: `{data: {user, posts}, meta}`; 404 for an unknown or deleted user."""
    user_id = path_id(request)
    query = Query(request)
    page = listing.newest_first(query, listing.POSTS)
    query.check()
    row = await request.app[POOL].fetchrow(_USER_POSTS[listing.mode(page)], page.limit, *listing.position(page), user_id)
    if row is None:
        raise NotFound("No such user")
    return listing.page_response(row, page, listing.POSTS)


async def get_post(request: web.Request) -> web.Response:
    data = await request.app[POOL].fetchval(Q.get_post, path_id(request))
    if data is None:
        raise NotFound("No such post")
    return responses.data_text(data)


async def create_post(request: web.Request) -> web.Response:
    body = await read_json(request, PostCreate)
    author_id = caller(request).user_id

    async def write():
        async with transaction(request.app[POOL]) as conn:
            if body.tags:  # created on first use, in a statement of its own: see tags.sql
                await conn.execute(Q.upsert_tags, body.tags)
            row = await conn.fetchrow(Q.insert_post, author_id, body.title, body.body, body.tags)
            await outbox.emit(conn, "post.created", {"postId": row["id"], "authorId": author_id},
                              request.get(REQUEST_ID))
            return row

    row = await retrying(write)
    outbox.wake(request.app[POOL])
    # The tag list (postCount per tag) changes only when the post links tags.
    await invalidate(request, "posts", *(("tags",) if body.tags else ()))
    return responses.data_text(row["data"], status=201, headers={"Location": f"/api/posts/{row['id']}"})


async def _owned_post(request: web.Request) -> int:
    """The post's id once the caller may change it: 404 when missing, 403 when not theirs (nor an admin's)."""
    post_id = path_id(request)
    author_id = await request.app[POOL].fetchval(Q.post_author, post_id)
    if author_id is None:
        raise NotFound("No such post")
    require_owner_or_admin(request, author_id)
    return post_id


async def patch_post(request: web.Request) -> web.Response:
    """200 with the post as GET shows it. Given `tags` replace the set; `{}` changes nothing."""
    post_id = await _owned_post(request)
    body = await read_json(request, PostPatch)

    async def write():
        async with transaction(request.app[POOL]) as conn:
            # The post's row, its links, then tags rows: migration 0003's lock order.
            if await conn.fetchval(Q.update_post, post_id, body.title, body.body, bool(body.model_fields_set)) is None:
                raise NotFound("No such post")
            if body.tags is not None:
                if body.tags:
                    await conn.execute(Q.upsert_tags, body.tags)
                await conn.execute(Q.lock_post_links, post_id)
                await conn.execute(Q.replace_post_tags, post_id, body.tags)
            return await conn.fetchval(Q.get_post, post_id)

    data = await retrying(write)
    await invalidate(request, f"post:{post_id}", "posts", *(("tags",) if body.tags is not None else ()))
    return responses.data_text(data)


async def delete_post(request: web.Request) -> web.Response:
    post_id = await _owned_post(request)
    if await retrying(lambda: request.app[POOL].fetchval(Q.delete_post, post_id)) is None:
        raise NotFound("No such post")
    await invalidate(request, f"post:{post_id}", "posts", "tags", "comments")  # its comments went with it
    return web.Response(status=204)
