"""Decoding of request input: JSON bodies into schemas, query parameters, path ids and keyset cursors."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TypeVar

import orjson
import pydantic
from aiohttp import web

from .errors import ClientGone, MalformedJson, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationError
from .inflate import inflate
from .protocol import send_continue
from .schemas import Body, error_details

B = TypeVar("B", bound=Body)
MAX_ID = 2**63 - 1
MAX_DEPTH = 10_000  # page × limit beyond this needs a cursor (API.md)
_DIGITS = re.compile(r"[0-9]{1,19}")  # fullmatch: `$` would let a trailing newline through


async def read_body(request: web.Request) -> bytes:
    """The body as sent (server/inflate.py): PayloadTooLarge at once for a declared length past
    client_max_size, else when that many bytes have come; `100 Continue` first to a client that awaits
    it (server/protocol.py). When the client has closed its connection, aiohttp raises
    ConnectionResetError here even for a body it had whole."""
    length = request.content_length
    if length is not None and length > request.client_max_size:
        raise PayloadTooLarge()
    try:
        await send_continue(request)
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge() from None
    except ConnectionResetError:
        raise ClientGone() from None


async def read_json(request: web.Request, model: type[B]) -> B:
    """The body as `model`: 415 unless JSON, 400 MALFORMED_JSON unless an object, 400 per field."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    raw = await read_body(request)
    if encoding := request.headers.get("Content-Encoding"):
        raw = inflate(raw, encoding, request.client_max_size)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedJson("The body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedJson("The body must be a JSON object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(details=error_details(exc.errors())) from None


def path_id(request: web.Request, name: str = "id") -> int:
    """The route's id; routes only match digits, so the one fault left is a value past bigint."""
    value = int(request.match_info[name])
    if not 0 < value <= MAX_ID:
        raise NotFound()
    return value


class Query:
    """Collects every fault in the query string, so one answer lists them all."""

    def __init__(self, request: web.Request) -> None:
        self.params = request.query
        self.details: list[dict] = []

    def fault(self, field: str, message: str) -> None:
        self.details.append({"field": field, "message": message})

    def raw(self, name: str) -> str | None:
        values = self.params.getall(name, [])
        if len(values) > 1:
            self.fault(name, "must be given at most once")
        return values[0] if values else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
            self.fault(name, "must be a positive integer" if (low, high) == (1, MAX_ID)
                       else f"must be an integer from {low} to {high}")
            return default
        return int(value)

    def check(self) -> None:
        if self.details:
            raise ValidationError(details=self.details)


@dataclass(frozen=True)
class Paging:
    limit: int
    page: int | None  # page mode
    after: tuple | None  # cursor mode: the sort key of the last item seen

    @property
    def offset(self) -> int:
        return ((self.page or 1) - 1) * self.limit


def paging(query: Query, kind: str, key_types: tuple[type, ...]) -> Paging:
    """`?page&limit` or `?cursor&limit` (limit 1-100, default 20; page × limit ≤ 10,000)."""
    limit = query.integer("limit", 20, 1, 100)
    cursor = query.raw("cursor")
    if cursor is not None:
        if query.raw("page") is not None:
            query.fault("page", "cannot be combined with cursor")
        return Paging(limit, None, decode_cursor(query, cursor, kind, key_types))
    page = query.integer("page", 1, 1, MAX_ID)
    if page * limit > MAX_DEPTH:
        query.fault("page", f"page × limit may reach {MAX_DEPTH} rows; use cursor to go deeper")
    return Paging(limit, page, None)


def encode_cursor(kind: str, *key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, *key])).rstrip(b"=").decode()


def decode_cursor(query: Query, cursor: str, kind: str, key_types: tuple[type, ...]) -> tuple | None:
    """The sort key inside an opaque cursor, or a fault on `cursor` when it is not one of ours."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        value = None
    if (isinstance(value, list) and len(value) == len(key_types) + 1 and value[0] == kind
            and all(type(v) is t for v, t in zip(value[1:], key_types))
            and all(0 < v <= MAX_ID for v in value[1:] if type(v) is int)):
        return tuple(value[1:])
    query.fault("cursor", "is not a valid cursor")
    return None
