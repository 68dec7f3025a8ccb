"""`python -m perf inprocess`: the CPU our layers add to a request, without the network or the database.

`perf layers` measures the real thing (both stacks under wrk) but moves with everything else on the
machine: a few microseconds either way between runs. This measures only our code, repeatably to a few
tenths of a microsecond. The service's app (server/app.py, behind its own protocol class, as `serve`
runs it) and the baseline's app run in this one process, each fed pipelined `GET` requests through
aiohttp's real protocol over a transport that keeps nothing but a count of the answers. Reads from the
pool are answered by PostgreSQL the first time and from memory after that (the same answer for the same
statement and arguments), so what is left is the CPU of everything around the queries: parsing, routing,
our request path, the handler and writing the answer. Rounds alternate between the two apps; the figures
are medians of process CPU time per request.

Both apps share this process's garbage collector settings: the service's (server/runner.py), so the
difference is the code alone. The stack is perf/stack.py's (PostgreSQL with the seeded data and Redis:
the rate limiter still takes its shares there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from server.db import Pool

from .stack import Stack

BATCH = 50  # requests sent at once on the connection (HTTP/1.1 pipelining); aiohttp answers them in order


@dataclass(frozen=True)
class Cost:
    path: str
    service_us: float  # process CPU per request, median of the rounds
    baseline_us: float


class _Transport(asyncio.Transport):
    """Counts answers (each starts a write with its status line) and wakes the waiter after `want` of them."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = self.want = 0
        self.statuses: set[bytes] = set()
        self.waiter: asyncio.Future | None = None
        self.closing = False

    def write(self, data) -> None:
        if bytes(data[:9]) == b"HTTP/1.1 ":
            self.answers += 1
            self.statuses.add(bytes(data[9:12]))
            if self.answers >= self.want and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


@contextlib.contextmanager
def replayed_reads():
    """Pool reads answer from memory after their first time; yields the answers kept, by statement."""
    answers: dict[tuple, object] = {}
    real = Pool._read  # noqa: SLF001

    async def read(self, method: str, sql: str, args: tuple):
        key = (method, sql, args)
        if key not in answers:
            answers[key] = await real(self, method, sql, args)
        return answers[key]

    Pool._read = read  # noqa: SLF001
    try:
        yield answers
    finally:
        Pool._read = real  # noqa: SLF001


async def _cpu_per_request(server, request: bytes, count: int) -> float:
    """Microseconds of process CPU per request for `count` requests on one new connection."""
    connection, transport = server(), _Transport()
    connection.connection_made(transport)
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for _ in range(0, count, BATCH):
        transport.want, transport.waiter = transport.answers + BATCH, loop.create_future()
        connection.data_received(request * BATCH)
        await transport.waiter
    spent = time.process_time() - started
    connection.connection_lost(None)
    if transport.statuses - {b"200"}:
        raise RuntimeError(f"{request.split()[1].decode()} answered {sorted(transport.statuses)}: measure a 200")
    return spent / (count // BATCH * BATCH) * 1e6


async def measure(service: web.Application, baseline: web.Application, paths: list[str], requests: int,
                  rounds: int) -> list[Cost]:
    """Medians of `rounds` alternating rounds of `requests` requests per path on each app."""
    from server.protocol import Limits, Runner
    from server.runner import tune_gc

    runners = [Runner(service, Limits(10, 10), access_log=None), web.AppRunner(baseline, access_log=None)]
    for runner in runners:
        await runner.setup()
    tune_gc()
    try:
        costs = []
        for path in paths:
            request = f"GET {path} HTTP/1.1\r\nHost: perf\r\n\r\n".encode()
            samples: list[list[float]] = [[], []]
            for runner in runners:  # the first answers come from PostgreSQL, and the code is warm
                await _cpu_per_request(runner.server, request, BATCH * 4)
            for _ in range(rounds):
                for side, runner in enumerate(runners):
                    samples[side].append(await _cpu_per_request(runner.server, request, requests))
            costs.append(Cost(path, statistics.median(samples[0]), statistics.median(samples[1])))
        return costs
    finally:
        for runner in runners:
            await runner.cleanup()


def print_costs(costs: list[Cost]) -> None:
    print(f"{'path':28} {'service µs':>10} {'baseline µs':>11} {'layers µs':>9}")
    for c in costs:
        print(f"{c.path:28} {c.service_us:10.1f} {c.baseline_us:11.1f} {c.service_us - c.baseline_us:9.1f}")


def run(paths: list[str], *, scale: int, requests: int, rounds: int, var: Path) -> None:
    import uvloop

    from server.app import create_app
    from server.config import Config

    from . import baseline

    tmp = Path(tempfile.mkdtemp(prefix="perf-inprocess-"))
    tmp.chmod(0o755)  # the embedded PostgreSQL's user must reach it
    try:
        with Stack(var, tmp, 1, None, logs=tmp / "logs") as stack:
            stack.seed(scale, 1)
            # PORT is only a setting here: nothing listens, the apps are fed in this process.
            env = stack.service_env({"CACHE_ENABLED": "false", "LOG_LEVEL": "warning"}, port=8080)
            os.environ.update(env)  # the baseline reads its settings from the environment

            async def main() -> list[Cost]:
                with replayed_reads():
                    return await measure(create_app(Config.from_env(env)), baseline.create_app(), paths, requests,
                                         rounds)

            print_costs(uvloop.run(main()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
