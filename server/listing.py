"""What the post and comment lists share: newest-first keyset cursors, filters, the answer of a page."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from aiohttp import web

from . import responses
from .inputs import MAX_ID, Paging, Query, encode_cursor, paging
from .schemas import TAG

POSTS = "p"      # cursor kinds: a cursor of one kind of list is refused by the others
COMMENTS = "c"
_DIGITS = re.compile(r"[0-9]{1,19}")


def newest_first(query: Query, kind: str) -> Paging:
    """paging() for lists ordered by (created_at DESC, id DESC); a cursor holds that key of the last item."""
    page = paging(query, kind, (str, int))
    if page.after is None:
        return page
    try:
        at = datetime.fromisoformat(page.after[0])
        # Converted here so that no value a cursor can hold reaches the database driver unchecked.
        at = at.astimezone(timezone.utc) if at.tzinfo is not None else None
    except (ValueError, OverflowError):
        at = None
    if at is None:
        query.fault("cursor", "is not a valid cursor")
        return dataclasses.replace(page, after=None)
    return dataclasses.replace(page, after=(at, page.after[1]))


def mode(page: Paging) -> str:
    """Which of a list's three statements reads this page (sql/queries/posts.sql): first, page or after."""
    if page.after is not None:
        return "after"
    return "first" if page.offset == 0 else "page"


def position(page: Paging) -> tuple:
    """The statement parameters after the limit: none (first page), the offset, or the cursor's key."""
    if page.after is not None:
        return page.after
    return (page.offset,) if page.offset else ()


def tag_filter(query: Query) -> str | None:
    """`?tag=`, trimmed and lower-cased like the tags of a post; not a tag name: a fault."""
    value = query.raw("tag")
    if value is None:
        return None
    name = value.strip().lower()
    if not TAG.fullmatch(name):
        query.fault("tag", "must be a tag name: 1-32 of a-z, 0-9 and -")
        return None
    return name


def id_filter(query: Query, name: str) -> int | None:
    value = query.raw(name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or not 0 < int(value) <= MAX_ID:
        query.fault(name, "must be a positive integer id")
        return None
    return int(value)


def page_response(row: Mapping, page: Paging, kind: str) -> web.Response:
    """`{data, meta}` from a list statement's row: total, data (JSON text), more, last_created_at, last_id."""
    next_cursor = encode_cursor(kind, row["last_created_at"].isoformat(), row["last_id"]) if row["more"] else None
    meta = responses.page_meta(page, row["total"], next_cursor)
    return responses.raw(b'{"data":' + row["data"].encode() + b',"meta":' + responses.dumps(meta) + b"}")
