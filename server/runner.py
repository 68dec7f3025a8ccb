"""One API process: listen, say when ready, and on SIGTERM or SIGINT stop without failing a request.

The graceful stop, in order:
1. Stop listening. The connections the kernel already completed but we had not accepted yet are
   accepted and served first (closing a listening socket resets them, requests included).
2. Drain: every answer from now on carries `Connection: close`; requests in flight, and requests that
   arrive on open connections within IDLE_GRACE (those already sent before the signal, still in the
   socket buffers), are served. Connections that stay idle through the grace are closed.
3. After SHUTDOWN_TIMEOUT in all, what is still running is cancelled (aiohttp's own shutdown).
4. The app's cleanup contexts close the pools (and the in-process outbox worker finishes its batch).
The process then exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from .config import Config
from .listener import Listener
from .protocol import ConnectionServer, Limits, Runner

log = logging.getLogger("server.runner")

IDLE_GRACE = 1.0  # seconds idle keep-alive connections stay open after the signal (requests on their way)
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle keep-alive connection is kept (aiohttp's run_app default)
DRAIN_STEP = 0.05  # seconds between two looks at the connections while draining


# With Python's defaults (a young-generation collection every 700 allocations) the collector took 6 % of
# an API process's CPU samples under `perf record` on GET /api/users/{id}, against under 1 % in the bare
# baseline. Objects that exist once the app is built are frozen (never scanned again), and the collector
# runs every 50,000 allocations: the gap to the baseline's user CPU per request, measured in the same
# rounds, went from 41-46 to 23-26 µs (perf/README.md, "What our layers cost").
GC_THRESHOLD = 50_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)


async def serve(config: Config, *, reuse_port: bool = False, ready_fd: int | None = None) -> None:
    """Serve config's app on HOST:PORT until SIGTERM or SIGINT, then stop gracefully."""
    from .app import create_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    runner = Runner(create_app(config), Limits(config.header_timeout, config.body_timeout), access_log=None,
                    keepalive_timeout=KEEPALIVE_TIMEOUT, shutdown_timeout=config.shutdown_timeout)
    await runner.setup()
    tune_gc()
    watchdog = None
    try:
        server = runner.server
        assert isinstance(server, ConnectionServer)
        listener = Listener(server, config.host, config.port, backlog=config.listen_backlog, reuse_port=reuse_port)
        watchdog = asyncio.create_task(server.watch())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A reload is the supervisor's (`serve --workers N`); here SIGHUP would kill without a drain.
        loop.add_signal_handler(signal.SIGHUP, lambda: log.warning("SIGHUP ignored: reloads need serve --workers N"))
        if ready_fd is not None:  # the supervisor waits for this before it stops the previous processes
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
        await stop.wait()
        started = loop.time()
        log.info("stopping: %d connections open", len(server.connections))
        if accepted := await listener.close():
            log.info("accepted %d queued connections before closing the listening socket", accepted)
        await _drain(server, started + config.shutdown_timeout)
        # What is left gets aiohttp's shutdown with the time that remains, then is cancelled (a zero
        # timeout would mean none to aiohttp).
        runner._shutdown_timeout = max(0.05, started + config.shutdown_timeout - loop.time())
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("stopped")


async def _drain(server: ConnectionServer, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    server.draining = True
    grace_end = min(loop.time() + IDLE_GRACE, deadline)
    while server.connections and loop.time() < deadline:
        if loop.time() >= grace_end:
            for connection in server.connections:
                if connection.idle:
                    connection.force_close()
        await asyncio.sleep(DRAIN_STEP)
