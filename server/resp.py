"""One lean Redis connection for the script batcher: commands written as RESP, replies read by hiredis.

The batcher's work per request is one EVALSHA sent with the others of its loop turn. Through redis-py a
batch costs a Pipeline object, a pooled connection taken under a lock, Python-level encoding of each
argument and a parse callback per reply: about 40 µs of the API's CPU per request under load. Here a
batch is one bytes object written to one long-lived connection, and its replies come back in order to
a queue of futures (hiredis, the parser redis-py itself uses, does the reading).

Only what the batcher needs: commands and their replies, AUTH and SELECT from the URL, TLS for rediss://.
Anything else (SCRIPT LOAD after a NOSCRIPT, the cache's epoch, admin) keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import NoScriptError, ResponseError


def encode(*parts) -> bytes:
    """One command in RESP: an array of bulk strings (str, bytes and int arguments)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif isinstance(part, int):
            part = b"%d" % part
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _error(reply: hiredis.ReplyError) -> ResponseError:
    message = str(reply)
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class RespProtocol(asyncio.Protocol):
    """Replies, in order, to the batches written before them: one future per batch, set with its list."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[tuple[asyncio.Future, int, list]] = collections.deque()
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()  # kept: each get_running_loop() is a getpid() on Python 3.11

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future, expected, replies = self.waiting[0]
            replies.append(_error(reply) if isinstance(reply, hiredis.ReplyError) else reply)
            if len(replies) == expected:
                self.waiting.popleft()
                if not future.done():  # its caller gave up (timeout); the order is kept all the same
                    future.set_result(replies)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("Redis closed the connection")
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {self.lost}"))

    def write(self, commands: Sequence[bytes]) -> asyncio.Future:
        future = self.loop.create_future()
        self.waiting.append((future, len(commands), []))
        self.transport.write(b"".join(commands))
        return future


class RespConnection:
    """A connection made on first use and again after it is lost; `send` writes several commands at once."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// or rediss:// URL: {parts.scheme}")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.db = int(parts.path.lstrip("/") or 0)
        self._protocol: RespProtocol | None = None
        self._connecting: asyncio.Future | None = None

    @staticmethod
    def supports(url: str) -> bool:
        return urlsplit(url).scheme in ("redis", "rediss")

    async def _connect(self) -> RespProtocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            RespProtocol, self.host, self.port, ssl=ssl.create_default_context() if self.tls else None)
        hello = []
        if self.password is not None:
            hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        if hello:
            for reply in await protocol.write([encode(*command) for command in hello]):
                if isinstance(reply, Exception):
                    protocol.transport.close()
                    raise reply
        return protocol

    async def _ready(self) -> RespProtocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        connecting = self._connecting
        if connecting is None:  # one connect at a time; concurrent batches wait for it
            connecting = self._connecting = asyncio.ensure_future(self._connect())
        try:
            protocol = self._protocol = await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None
        return protocol

    async def send(self, commands: Sequence[bytes]) -> list:
        """The replies of `commands` (an error reply as its exception), in order; ConnectionError or
        OSError when the connection fails. A caller that gives up should call `reset`."""
        protocol = await self._ready()
        return await protocol.write(commands)

    def reset(self) -> None:
        """Drop the connection (after a timeout: its late replies must not be waited for)."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()
        self._protocol = None

    def close(self) -> None:
        self.reset()
