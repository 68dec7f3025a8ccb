"""The error hierarchy, error_body(), and the envelope that every failure becomes (failure_response).

ApiError
├── ValidationError        400 VALIDATION_ERROR, with per-field details
├── MalformedJson          400 MALFORMED_JSON
├── Unauthorized           401 UNAUTHORIZED
├── TokenExpired           401 TOKEN_EXPIRED
├── InvalidToken           401 INVALID_TOKEN
├── InvalidCredentials     401 INVALID_CREDENTIALS
├── Forbidden              403 FORBIDDEN
├── NotFound               404 NOT_FOUND
├── MethodNotAllowed       405 METHOD_NOT_ALLOWED
├── RequestTimeout         408 REQUEST_TIMEOUT (a body that does not arrive in time: server/protocol.py)
├── Conflict               409 CONFLICT
├── PayloadTooLarge        413 PAYLOAD_TOO_LARGE
├── UnsupportedMediaType   415 UNSUPPORTED_MEDIA_TYPE
├── RateLimited            429 RATE_LIMIT_EXCEEDED
├── ServiceUnavailable     503 SERVICE_UNAVAILABLE
└── InternalError          500 INTERNAL_ERROR
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import uuid

import asyncpg
import orjson
from aiohttp import web


log = logging.getLogger("server.errors")

REQUEST_ID = web.RequestKey("request_id", str)
# Header fields an inner layer wants on the answer whatever it is (the rate limiter's): the envelope adds
# them to the error answers it renders, since those are built here, outside that layer.
RESPONSE_HEADERS = web.RequestKey("response_headers", dict)


class ApiError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    message = "An unexpected error occurred"

    def __init__(self, message: str | None = None, details: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}


class ValidationError(ApiError):
    status, code, message = 400, "VALIDATION_ERROR", "Invalid request data"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationError:
        return cls(details=[{"field": field, "message": message}])


class MalformedJson(ApiError):
    status, code, message = 400, "MALFORMED_JSON", "The body must be a JSON object"


class Unauthorized(ApiError):
    status, code, message = 401, "UNAUTHORIZED", "Authentication required"

    def __init__(self, message: str | None = None):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="api"'})


class TokenExpired(Unauthorized):
    code, message = "TOKEN_EXPIRED", "The access token has expired"


class InvalidToken(Unauthorized):
    code, message = "INVALID_TOKEN", "The token is invalid"


class InvalidCredentials(ApiError):
    status, code, message = 401, "INVALID_CREDENTIALS", "Wrong email or password"


class Forbidden(ApiError):
    status, code, message = 403, "FORBIDDEN", "You are not allowed to do this"


class NotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "Not found"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class RequestTimeout(ApiError):
    status, code, message = 408, "REQUEST_TIMEOUT", "The request did not arrive in time"


class Conflict(ApiError):
    status, code, message = 409, "CONFLICT", "A unique value is already taken"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "The request body is too large"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "UNSUPPORTED_MEDIA_TYPE", "The body must be application/json"


class RateLimited(ApiError):
    status, code, message = 429, "RATE_LIMIT_EXCEEDED", "Too many requests"


class ServiceUnavailable(ApiError):
    status, code, message = 503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable"

    def __init__(self, message: str | None = None, retry_after: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ClientGone(ApiError):
    """The client closed its connection before its body was read: no one is left to answer. Counted under
    nginx's 499 (the metrics and access log's status for a request whose client went away) and not
    mistaken for a dependency outage, which a bare ConnectionResetError would be (PG_UNAVAILABLE)."""
    status, code, message = 499, "CLIENT_CLOSED_REQUEST", "The client closed the connection"


class InternalError(ApiError):
    pass


def error_body(error: ApiError, request_id: str | None) -> bytes:
    body = {"code": error.code, "message": error.message}
    if error.details:
        body["details"] = error.details
    body["requestId"] = request_id
    return orjson.dumps({"error": body})


def error_response(error: ApiError, request_id: str | None, extra: dict[str, str] | None = None) -> web.Response:
    headers = {**extra, **error.headers} if extra else dict(error.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    return web.Response(status=error.status, body=error_body(error, request_id),
                        content_type="application/json", headers=headers)


# asyncpg's unique-violation detail names the columns: `Key (email)=(...)`, or `Key (lower(username))`.
_UNIQUE_FIELD = re.compile(r"Key \((?:lower\()?([a-z_]+)\)?\)=")
_CAMEL = {"display_name": "displayName"}

# What a dependency outage looks like from asyncpg: the server going away, refusing connections,
# shutting down, or no connection within the pool's wait.
PG_UNAVAILABLE = (
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    asyncpg.exceptions.InternalClientError, ConnectionError,
    OSError, asyncio.TimeoutError,
    # The server out of connections (a reconnect storm after a restart), memory or disk.
    asyncpg.exceptions.InsufficientResourcesError,
)


def from_exception(exc: BaseException) -> ApiError:
    """Map anything raised while handling a request to the ApiError that answers it."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, web.HTTPException):
        return _from_http(exc)
    if isinstance(exc, asyncpg.UniqueViolationError):
        match = _UNIQUE_FIELD.search(exc.detail or "")
        if match:
            field = _CAMEL.get(match.group(1), match.group(1))
            return Conflict(f"This {field} is already taken", [{"field": field, "message": "is already taken"}])
        return Conflict()
    if isinstance(exc, asyncpg.QueryCanceledError):  # statement_timeout
        return ServiceUnavailable("The database took too long")
    if isinstance(exc, PG_UNAVAILABLE):
        return ServiceUnavailable("The database is unavailable")
    return InternalError()


def _from_http(exc: web.HTTPException) -> ApiError:
    status = exc.status
    if status == 404:
        return NotFound("No such route")
    if status == 405:
        allowed = ", ".join(sorted(exc.allowed_methods)) if isinstance(exc, web.HTTPMethodNotAllowed) else ""
        return MethodNotAllowed(headers={"Allow": allowed})
    if status == 413:
        return PayloadTooLarge()
    mapped = {400: MalformedJson, 401: Unauthorized, 403: Forbidden, 409: Conflict,
              415: UnsupportedMediaType, 429: RateLimited}.get(status)
    if mapped is not None:
        return mapped()
    error = ApiError(exc.reason)
    error.status, error.code = status, {503: "SERVICE_UNAVAILABLE"}.get(status, "ERROR")
    return error if 400 <= status < 600 else InternalError()


_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


# Made ids: a random prefix per process and a counter, unique without a system call per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-Id when it is a short, safe token; otherwise a new one (32 hex digits)."""
    given = request.headers.get("X-Request-Id")
    if given and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def failure_response(request: web.Request, exc: Exception, request_id: str) -> web.Response:
    """The envelope for anything raised while answering (server/pipeline.py), with the header fields an
    inner layer set for every answer. Unexpected errors are logged with their traceback, outages as one line."""
    error = from_exception(exc)
    if isinstance(error, InternalError):
        log.exception("unhandled error on %s %s", request.method, request.path, extra={"request_id": request_id})
    elif isinstance(error, ServiceUnavailable) and not isinstance(exc, (ApiError, web.HTTPException)):
        log.warning("dependency unavailable on %s %s: %s", request.method, request.path, type(exc).__name__,
                    extra={"request_id": request_id})
    return error_response(error, request_id, request.get(RESPONSE_HEADERS))
