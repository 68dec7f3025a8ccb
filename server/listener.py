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
        self.tasks: set[asyncio.Task] = set()
        self.paused = False
        self.socks: list[socket.socket] = []
        # Every address the host name resolves to, as asyncio's create_server does (HOST= binds all).
        infos = {(i[0], i[4][:2]): i for i in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                   flags=socket.AI_PASSIVE)}
        try:
            for family, kind, proto, _, address in infos.values():
                try:
                    sock = socket.socket(family, kind, proto)
                except OSError:  # a family this machine lacks (IPv6), as asyncio skips it
                    continue
                self.socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:  # serve --workers N: every process listens on the port, the kernel spreads
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            for sock in self.socks:
                sock.close()
            raise
        if not self.socks:
            raise OSError(f"no address to listen on for {host!r}")
        for sock in self.socks:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the queue waits (and overflows) rather than spinning on it.
                    log.warning("cannot accept connections: %s", exc.strerror)
                    self._pause(sock)
                return  # ECONNABORTED and the like: that client is gone
            conn.setblocking(False)
            task = self.loop.create_task(self.loop.connect_accepted_socket(self.factory, conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _pause(self, sock: socket.socket) -> None:
        self.loop.remove_reader(sock.fileno())
        self.paused = True

        def resume() -> None:
            if self.paused and sock.fileno() >= 0:
                self.paused = False
                self.loop.add_reader(sock.fileno(), self._accept, sock)

        self.loop.call_later(EMFILE_PAUSE, resume)

    async def close(self) -> int:
        """Stop listening, first accepting what the kernel has queued (closing a listening socket
        resets those connections, requests included); returns how many were taken that way."""
        self.paused = False
        accepted = 0
        for sock in self.socks:
            self.loop.remove_reader(sock.fileno())
            while True:
                before = len(self.tasks)
                self._accept(sock)
                taken = len(self.tasks) - before
                accepted += taken
                if taken < ACCEPT_BATCH:
                    break
            sock.close()  # connections arriving from here on go to the other processes (or are refused)
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        return accepted
