"""CPU per rate-limit decision, without HTTP: Redis (auto-pipelined), and in memory with the breaker open.

    .venv/bin/python -m perf.limiter_decisions

Starts a throwaway Redis of its own; 64 concurrent callers for 2 s per mode. Steadier than req/s through
wrk on a shared machine, because it counts only this process's CPU time.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import uvloop

from server.breaker import Breaker
from server.config import Config
from server.embedded import EmbeddedRedis, free_port
from server.ratelimit import Limiter
from server.redisbatch import ScriptBatcher
from server.redisdb import create_client
from server.resp import RespConnection

CALLERS, SECONDS = int(os.environ.get("CALLERS", 64)), 2.0


async def measure(limiter: Limiter) -> tuple[float, float]:
    """(CPU µs per decision, decisions per second)."""
    count, stop, began = 0, time.monotonic() + SECONDS, time.process_time()

    async def caller() -> None:
        nonlocal count
        while time.monotonic() < stop:
            await limiter.check("127.0.0.1")
            count += 1

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return 1e6 * (time.process_time() - began) / count, count / SECONDS


async def main(url: str) -> None:
    config = Config(redis_url=url, rate_limit="100000000/15m")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for label, target, lean in (("redis, lean connection", url, True), ("redis, redis-py pipeline", url, False),
                                ("in memory, breaker open", dead, True)):
        client = create_client(target, config.redis_pool_max, config.redis_timeout)
        batcher = ScriptBatcher(client, Breaker(timeout=0.25, failures=3, reset=3600),
                                RespConnection(target) if lean else None)
        cpu, rate = await measure(Limiter(config, client, batcher))
        print(f"{label}: {cpu:.1f} µs CPU per decision, {rate:,.0f} decisions/s")
        batcher.close()
        await client.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="limiter-decisions-") as folder:
        server = EmbeddedRedis(Path(folder), persist=False)
        server.start()
        try:
            uvloop.run(main(server.url))
        finally:
            server.stop()
