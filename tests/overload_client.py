"""A lean HTTP/1.1 load client for the overload case: N keep-alive connections on raw asyncio protocols.

Run as its own process (`python -m tests.overload_client '{json options}'`), so that its event loop does
not share one with the test's; it prints a JSON line when it stops sending, then one of counts and
latencies. Each connection sends
its next request as soon as the previous answer is complete (a closed loop, the harshest for the
server); an answer with `Connection: close`, or a dropped connection, makes it reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import json
import resource
import sys
import time

import uvloop


class Stats:
    def __init__(self) -> None:
        self.statuses: collections.Counter = collections.Counter()
        self.latency: dict[str, list[float]] = {"ok": [], "503": [], "other": []}
        self.no_retry_after = 0  # 503s without Retry-After
        self.errors: collections.Counter = collections.Counter()  # connection failures, by kind
        self.connect_ms: list[float] = []
        self.lag_ms: list[float] = []


class Conn(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client, self.buf, self.sent_at, self.transport, self.path = client, b"", None, None, 0
        self.first = True
        self.opened = client.loop.time()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client.stats.connect_ms.append((self.client.loop.time() - self.opened) * 1000)
        self.send()

    def send(self) -> None:
        if self.transport.is_closing():
            return
        if not self.client.running:
            self.transport.close()
            return
        self.sent_at = self.client.loop.time()
        self.path, request = self.client.next_request()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop > 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        self.buf = self.buf[end + 4 + length:]
        status = int(head[9:12])
        took = (self.client.loop.time() - self.sent_at) * 1000
        self.sent_at = None
        stats = self.client.stats
        stats.statuses[status] += 1
        if status == 503:
            stats.latency["503"].append(took)
            stats.no_retry_after += b"\r\nretry-after:" not in head
        else:
            stats.latency["ok" if 200 <= status < 300 else "other"].append(took)
            if 200 <= status < 300:
                stats.latency.setdefault(f"ok {self.client.options['paths'][self.path]}", []).append(took)
        stats.latency.setdefault("first" if self.first else "later", []).append(took)
        self.first = False
        if b"\r\nconnection: close" in head:
            self.transport.close()  # connection_lost reconnects
        elif status == 503 and self.client.options.get("honour_retry_after"):
            at = head.find(b"\r\nretry-after:")
            wait = float(head[at + 14:head.find(b"\r\n", at + 2) if head.find(b"\r\n", at + 2) > 0 else len(head)]) \
                if at >= 0 else 1.0
            self.client.loop.call_later(wait, self.send)
        else:
            self.send()

    def connection_lost(self, exc) -> None:
        if self.sent_at is not None:
            self.client.stats.errors["lost with a request in flight"] += 1
        self.client.reconnect()


class Client:
    def __init__(self, options: dict) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.stats = Stats()
        self.running = True
        self.requests = [
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             + (f"Authorization: Bearer {options['token']}\r\n" if options.get("token") else "") + "\r\n").encode()
            for path in options["paths"]]
        self.turn = 0

    def next_request(self) -> tuple[int, bytes]:
        self.turn += 1
        return self.turn % len(self.requests), self.requests[self.turn % len(self.requests)]

    async def watch_lag(self) -> None:
        """This process's own event-loop lag, which inflates every latency it measures."""
        while True:
            started = self.loop.time()
            await asyncio.sleep(0.005)
            self.stats.lag_ms.append((self.loop.time() - started - 0.005) * 1000)

    def reconnect(self) -> None:
        if self.running:
            self.loop.create_task(self.connect())

    async def connect(self) -> None:
        try:
            await self.loop.create_connection(lambda: Conn(self), "127.0.0.1", self.options["port"])
        except OSError as exc:
            self.stats.errors[f"connect: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
            self.reconnect()

    async def run(self) -> dict:
        # Connections open over the first `ramp` seconds, as clients arriving, not one SYN burst.
        count, ramp = self.options["connections"], self.options.get("ramp", 0.5)
        for i in range(count):
            self.loop.create_task(self.connect())
            if i % 50 == 49:
                await asyncio.sleep(ramp * 50 / count)
        lag = self.loop.create_task(self.watch_lag())
        await asyncio.sleep(self.options["duration"])
        self.running = False
        stopped_at = time.monotonic()  # CLOCK_MONOTONIC: the test process reads the same clock
        print(json.dumps({"stopped_at": stopped_at}), flush=True)  # the test starts probing now
        lag.cancel()
        await asyncio.sleep(0.5)
        return {**summary(self.stats), "stopped_at": stopped_at}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def summary(stats: Stats) -> dict:
    return {
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "errors": dict(stats.errors),
        "no_retry_after": stats.no_retry_after,
        "latency_ms": {kind: {"p50": _pct(v, 0.5), "p90": _pct(v, 0.9), "p99": _pct(v, 0.99), "max": _pct(v, 1.0),
                              "n": len(v)}
                       for kind, v in stats.latency.items()},
        "client_lag_ms": {"p50": _pct(stats.lag_ms, 0.5), "p99": _pct(stats.lag_ms, 0.99), "max": _pct(stats.lag_ms, 1.0)},
        "connect_ms": {"p50": _pct(stats.connect_ms, 0.5), "p99": _pct(stats.connect_ms, 0.99),
                       "max": _pct(stats.connect_ms, 1.0), "n": len(stats.connect_ms)},
    }


async def _main(options: dict) -> dict:
    return await Client(options).run()


def main() -> None:
    options = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, options["connections"] * 2 + 256)), hard))
    print(json.dumps(uvloop.run(_main(options))))


if __name__ == "__main__":
    main()
