"""The HTTP connection: deadlines for slow clients, the envelope for unparsable requests, draining.

aiohttp's RequestHandler reads a request's head for as long as the client likes (only the keep-alive
timer, 75 s, ends a connection that never completes one) and answers a request it cannot parse with a
plain-text 400 and an error traceback in the log. `Connection` adds:

- a head deadline: a request's line and headers must arrive within HEADER_TIMEOUT of its first byte
  (of the connection, for the first request), else the connection is closed without an answer;
- a body deadline: once the head is in, the body must arrive within BODY_TIMEOUT, else the request is
  answered 408 REQUEST_TIMEOUT in the envelope and the connection closed;
- the envelope of API.md, and one debug line instead of a traceback, for requests aiohttp's parser
  refuses (a header line over 8190 bytes, over 128 header lines, not HTTP at all);
- `100 Continue` only when the handler reads the body (`expect_continue`, `send_continue`), not as soon
  as the head is routed: a client that waits for it before uploading (curl does past 1 MiB) is refused
  first, uploading nothing, when the answer does not need the body (401, 403, 404, 413 on a declared
  length, 415, and 429 except on login, whose limit is keyed by the body's email);
- `Connection: close` on every answer while the process drains (server/runner.py).

The deadlines cost nothing per request that arrives in one piece: they are two floats per connection,
checked by one task per process every WATCH_INTERVAL, not a timer per request.
"""

from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from .errors import (ApiError, InternalError, RequestTimeout, ServiceUnavailable, ValidationError, error_response,
                     from_exception, request_id_of)

log = logging.getLogger("server.protocol")

WATCH_INTERVAL = 0.25  # seconds between two checks of every connection's deadlines
SERVER = "blog-api"  # replaces aiohttp's `Python/3.x aiohttp/3.x`: no versions for scanners
OUTSIDE_HEADERS = {"Server": SERVER, "X-Content-Type-Options": "nosniff"}  # as observe.decorate() gives
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Limits:
    """The per-connection deadlines, in seconds."""

    def __init__(self, header_timeout: float, body_timeout: float) -> None:
        self.header_timeout, self.body_timeout = header_timeout, body_timeout


class Connection(RequestHandler):
    __slots__ = ("head_deadline", "head_started", "body", "body_deadline", "client_key", "withheld")

    def __init__(self, manager: ConnectionServer, **kwargs) -> None:
        super().__init__(manager, **kwargs)
        self.head_deadline: float | None = None  # set while a request head is awaited or arriving
        self.head_started = False  # bytes of a head arrived and it is not complete yet
        self.body = None  # the payload still arriving, and its deadline
        self.body_deadline: float | None = None
        self.client_key: str | None = None  # the rate limiter's key for the peer (server/ratelimit.py)
        self.withheld: web.BaseRequest | None = None  # a request whose client awaits `100 Continue`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.head_deadline = self._loop.time() + self._manager.limits.header_timeout

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        waiting_for_head = self.body is None or self.body.is_eof()
        super().data_received(data)
        if self._request_count != count:  # one or more heads completed
            self.head_started = False
            self.head_deadline = None
            payload = self._messages[-1][1] if self._messages else None
            if payload is not None and not payload.is_eof():
                self.body, self.body_deadline = payload, self._loop.time() + self._manager.limits.body_timeout
            else:
                self.body = self.body_deadline = None
        elif waiting_for_head and data and not self.head_started and not self._close:
            # The first bytes of the next request (a chunk that ends a body and starts a head is not
            # seen here; the client's next bytes arm the deadline, or the keep-alive timer ends it).
            self.head_started = True
            self.head_deadline = self._loop.time() + self._manager.limits.header_timeout

    @property
    def idle(self) -> bool:
        """Waiting for a request of which no byte has arrived (a keep-alive connection between requests)."""
        return self._waiter is not None and not self._waiter.done() and not self.head_started and not self._messages

    def check(self, now: float) -> None:
        """Called by the watchdog: close what missed its deadline."""
        manager = self._manager
        if manager is None:  # lost already
            return
        if self.head_deadline is not None and now > self.head_deadline and self._waiter is not None \
                and not self._messages:  # still waiting for that head (not busy with an earlier request)
            log.debug("closing a connection whose request head did not arrive in time")
            manager.slow_heads += 1
            self.force_close()
            return
        body = self.body
        if body is None:
            return
        if body.is_eof() or body.exception() is not None:
            self.body = self.body_deadline = None
        elif now > self.body_deadline and not self._reading_paused:  # paused: we are the slow side
            log.debug("answering 408: a request body did not arrive in time")
            manager.slow_bodies += 1
            self.body = self.body_deadline = None
            self.close()  # read nothing more; the connection closes after the answer
            body.set_exception(RequestTimeout(
                f"The request body did not arrive within {manager.limits.body_timeout:g} s"))
            body.feed_eof()  # so that nothing lingers to read the rest after the answer

    def finish_response(self, request, resp, start_time):
        """aiohttp's coroutine, returned for its caller to await (no frame of our own per request)."""
        if isinstance(resp, web.HTTPException) and "X-Request-Id" not in resp.headers:
            # aiohttp's own plain-text answer: a request target no route can take, such as `OPTIONS *`
            resp = _outside_answer(from_exception(resp), request)
        if self.withheld is not None:  # answered without asking for the body
            self.withheld = None
            if not request.content.is_eof():  # its client holds the body back: a new connection for its
                resp.force_close()              # next request, not a guess at what it sends now
        if self._close or (self._manager is not None and self._manager.draining):
            resp.force_close()  # says so to the client, which reconnects (elsewhere) for its next request
        return super().finish_response(request, resp, start_time)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answers what never reached the request path (server/pipeline.py): an unparsable request (400), or
        a failure that escaped it (500, which the envelope makes impossible short of a bug)."""
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if status == 400:
            log.debug("refused a request from %s: %s", request.remote, exc)
            error = _parse_error(exc)
        elif status == 504:
            error = ServiceUnavailable("The request took too long")
        else:
            log.error("error outside the request path", exc_info=exc)
            error = InternalError()
        response = _outside_answer(error, request)
        response.force_close()
        return response


async def expect_continue(request: web.BaseRequest) -> None:
    """The routes' expect handler (server/routes.py), in place of aiohttp's, which sends `100 Continue`
    as soon as the head is routed and answers any other expectation 417 outside the request path. Here
    a request with a body that expects `100-continue` waits for send_continue, and its body deadline with
    it; other expectations are ignored, as RFC 9110 10.1.1 allows, so the request takes its usual path."""
    if request.version != HttpVersion11 or not request.body_exists \
            or request.headers[hdrs.EXPECT].lower() != "100-continue":
        return
    connection = request.protocol
    if isinstance(connection, Connection):
        connection.withheld = request
        if connection.body is request.content:
            connection.body_deadline = math.inf  # the client waits for us
    else:  # aiohttp's own server (the tests' client): at once, as aiohttp does
        await _continue(request)


async def send_continue(request: web.BaseRequest) -> None:
    """Before the body is read (server/inputs.py): `100 Continue` to a client that waits for it, once;
    from then on its body has BODY_TIMEOUT to arrive."""
    connection = request.protocol
    if isinstance(connection, Connection) and connection.withheld is request:
        connection.withheld = None
        await _continue(request)
        if connection.body is request.content and connection._manager is not None:
            connection.body_deadline = connection._loop.time() + connection._manager.limits.body_timeout


async def _continue(request: web.BaseRequest) -> None:
    await request.writer.write(CONTINUE)
    request.writer.output_size = 0  # the answer proper has not started


def _outside_answer(error: ApiError, request: web.BaseRequest) -> web.Response:
    """The envelope, and the header fields every answer has, for what never reached the request path;
    the client's X-Request-Id when it is a safe one, as on every other answer."""
    response = error_response(error, request_id_of(request))
    response.headers.update(OUTSIDE_HEADERS)
    return response


def _parse_error(exc: BaseException | None) -> ApiError:
    if isinstance(exc, LineTooLong):
        return ValidationError("The request line or a header is too long",
                               [{"field": "headers", "message": "a line may be at most 8190 bytes"}])
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return ValidationError("Too many header lines", [{"field": "headers", "message": "at most 128 lines"}])
    return ValidationError("The request is not valid HTTP/1.1")


class ConnectionServer(web.Server):
    """aiohttp's Server making `Connection`s, with the watchdog of their deadlines."""

    def __init__(self, plain: web.Server, limits: Limits) -> None:
        super().__init__(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)
        self.limits = limits
        self.draining = False
        self.slow_heads = self.slow_bodies = 0  # connections closed, requests answered 408

    def __call__(self) -> Connection:
        return Connection(self, loop=self._loop, **self._kwargs)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = self._loop.time()
            for connection in list(self._connections):
                connection.check(now)


class Runner(web.AppRunner):
    """AppRunner whose server is a ConnectionServer."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, limits: Limits, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> ConnectionServer:
        return ConnectionServer(await super()._make_server(), self._limits)
