"""orjson bytes straight into web.Response, and the JSON views of rows that several handlers share."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def dumps(value) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)


def json(value, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type="application/json", headers=headers)


def raw(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A body already serialised (by PostgreSQL, for instance)."""
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def data_text(data: str, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """`{"data": ...}` around a resource PostgreSQL built as JSON text."""
    return raw(b'{"data":' + data.encode() + b"}", status, headers)


def public_user(row: Mapping) -> dict:
    return {"id": row["id"], "username": row["username"], "displayName": row["display_name"] or "",
            "bio": row["bio"] or "", "createdAt": row["created_at"]}


def owner_user(row: Mapping) -> dict:
    return {**public_user(row), "email": row["email"], "role": row["role"], "updatedAt": row["updated_at"],
            "disabledAt": row["disabled_at"]}


def page_meta(paging, total: int, next_cursor: str | None) -> dict:
    meta = {"limit": paging.limit, "total": total, "nextCursor": next_cursor}
    if paging.page is not None:
        meta["page"] = paging.page
    return meta
