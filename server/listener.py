"""The listening socket, accepted from in batches, and closed without dropping what the kernel queued.

uvloop's own server accepts one connection per event-loop turn (libuv since 1.45, libuv/libuv#3696, so
that processes sharing a socket take turns). Under overload a turn takes tens of milliseconds, so a
busy process accepted about a hundred connections a second: 2,000 clients arriving at once waited
seconds in the kernel's queue for their first answer (measured: 5.4 s median), when the whole point of
the in-flight bound is a fast 503. Here up to ACCEPT_BATCH connections are taken per turn, as CPython's
own asyncio server does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("server.listener")

ACCEPT_BATCH = 256  # connections accepted per event-loop turn at most
EMFILE_PAUSE = 0.1  # seconds accepting pauses when the process is out of file descriptors


class Listener:
    def __init__(self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int, *,
                 backlog: int, reuse_port: bool) -> None:
        self.loop = asyncio.get_running_loop()
        self.factory = protocol_factory
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        self.sock = socket.socket(family, kind, proto)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:  # serve --workers N: every process listens on the port, the kernel spreads
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.sock.bind(address)
            self.sock.listen(backlog)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.tasks: set[asyncio.Task] = set()
        self.paused = False
        self.loop.add_reader(self.sock.fileno(), self._accept)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the queue waits (and overflows) rather than spinning on it.
                    log.warning("cannot accept connections: %s", exc.strerror)
                    self._pause()
                return  # ECONNABORTED and the like: that client is gone
            conn.setblocking(False)
            task = self.loop.create_task(self.loop.connect_accepted_socket(self.factory, conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _pause(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.paused = True

        def resume() -> None:
            if self.paused and self.sock.fileno() >= 0:
                self.paused = False
                self.loop.add_reader(self.sock.fileno(), self._accept)

        self.loop.call_later(EMFILE_PAUSE, resume)

    async def close(self) -> int:
        """Stop listening, first accepting what the kernel has queued (closing a listening socket
        resets those connections, requests included); returns how many were taken that way."""
        self.paused = False
        self.loop.remove_reader(self.sock.fileno())
        accepted = 0
        while True:
            before = len(self.tasks)
            self._accept()
            taken = len(self.tasks) - before
            accepted += max(0, taken)
            if taken < ACCEPT_BATCH:
                break
        self.sock.close()  # connections arriving from here on go to the other processes (or are refused)
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        return accepted
