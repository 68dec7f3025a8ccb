"""Comments: a post's comments newest first, one comment, and create and delete."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from .. import listing, outbox, responses
from ..cache import invalidate
from ..db import POOL, Q
from ..errors import REQUEST_ID, NotFound
from ..guards import caller, require_owner_or_admin
from ..inputs import Query, path_id, read_json
from ..retry import retrying
from ..schemas import CommentCreate

# insert_comment writes the comment.created event itself, with a delivery for each of these.
_COMMENT_CONSUMERS = list(outbox.SUBSCRIPTIONS["comment.created"])
_LISTS = {"first": Q.list_comments_first, "page": Q.list_comments_page, "after": Q.list_comments_after}


async def list_comments(request: web.Request) -> web.Response:
    post_id = path_id(request)
    query = Query(request)
    page = listing.newest_first(query, listing.COMMENTS)
    query.check()
    row = await request.app[POOL].fetchrow(_LISTS[listing.mode(page)], page.limit, *listing.position(page), post_id)
    if row is None:
        raise NotFound("No such post")
    return listing.page_response(row, page, listing.COMMENTS)


async def get_comment(request: web.Request) -> web.Response:
    data = await request.app[POOL].fetchval(Q.get_comment, path_id(request))
    if data is None:
        raise NotFound("No such comment")
    return responses.data_text(data)


async def create_comment(request: web.Request) -> web.Response:
    post_id = path_id(request)
    body = await read_json(request, CommentCreate)
    author_id = caller(request).user_id
    try:
        request_id = request.get(REQUEST_ID)
        row = await retrying(lambda: request.app[POOL].write_once(
            Q.insert_comment, (post_id, author_id, body.body, request_id, _COMMENT_CONSUMERS),
            Q.comment_written, (request_id, post_id, author_id, body.body)))
    except asyncpg.ForeignKeyViolationError as exc:
        if exc.constraint_name == "comments_post_id_fkey":  # no such post, or deleted meanwhile
            raise NotFound("No such post") from None
        raise
    outbox.wake(request.app[POOL])
    await invalidate(request, f"post:{post_id}", "posts")
    return responses.data_text(row["data"], status=201, headers={"Location": f"/api/comments/{row['id']}"})


async def delete_comment(request: web.Request) -> web.Response:
    """The comment's author, the post's author or an admin may delete it."""
    comment_id = path_id(request)
    owners = await request.app[POOL].fetchrow(Q.comment_owners, comment_id)
    if owners is None:
        raise NotFound("No such comment")
    require_owner_or_admin(request, owners["author_id"], owners["post_author_id"])
    if await retrying(lambda: request.app[POOL].fetchval(Q.delete_comment, comment_id)) is None:
        raise NotFound("No such comment")
    await invalidate(request, f"post:{owners['post_id']}", "posts", "comments")
    return web.Response(status=204)
