"""Prometheus metrics: request instruments, live gauges, the collector hook, and multi-process mode.

Other modules add their own instruments through the app's `Metrics` (`app[METRICS]`):

    hits = app[METRICS].counter("cache_hits_total", "Answers served from the cache", ("route",))
    hits.labels(route).inc()

and report live state through a collector, a callable (sync or async, no arguments) that sets gauges:

    size = app[METRICS].gauge("cache_keys", "Entries in the response cache", mode="mostrecent")
    async def collect():
        size.set(await app[REDIS].dbsize())
    app[METRICS].register_collector(collect, shared=True)

Collectors run before every scrape. State of this process (pools, queues: `shared=False`) is also sampled
every second in each process in multi-process mode, so the scraped process reports the others' too;
state every process sees alike (rows in the database: `shared=True`) is read only by the scraped process,
into gauges of mode `mostrecent`. A collector that raises is logged and skipped; the scrape goes on.

Several API processes (`serve --workers N`) use prometheus-client's multi-process mode: each process
writes its values to memory-mapped files in PROMETHEUS_MULTIPROC_DIR and any process answers /metrics
with the sum over all of them, so one scrape through the shared port sees the whole machine. Requests
are tallied in memory and written out every second (and before each scrape, and at exit), so a scrape
counts the other processes' requests of the last second or less a moment later.
`prepare_multiprocess()` runs in `serve`'s parent before the API processes start. Its supervisor marks
every process that ends dead (reloads included: server/supervisor.py), so none leaves `live*` gauges behind.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
                               disable_created_metrics, generate_latest, multiprocess, values)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .config import Config
from .metric_sources import register_sources

log = logging.getLogger("server.metrics")
disable_created_metrics()  # no `_created` series: they double the output and no dashboard reads them

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_INTERVAL = 1.0  # seconds between samples of per-process gauges in multi-process mode
# From 1 ms (a cached read) to 10 s (the longest a request may take before it is a failure anyway).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The instruments of one application, and the collectors that report live state."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess == (values.ValueClass is values.MutexValue):
            # prometheus-client picks its value class when first imported; the variable may have been
            # set since, by prepare_multiprocess() in `serve`.
            values.ValueClass = values.get_value_class()
        self.registry = CollectorRegistry()
        self._collectors: list[tuple[Callable, bool]] = []
        self._requests = self.counter("http_requests_total", "HTTP requests answered, by route template and status",
                                      ("method", "route", "status"))
        self._duration = self.histogram("http_request_duration_seconds", "Time to answer HTTP requests, by route template",
                                        ("method", "route"))
        self._tally: dict[tuple, list] = {}  # (method, route, status) -> [count, seconds, per bucket]
        self.in_flight = 0  # requests being answered by this process; sampled into a gauge
        in_flight = self.gauge("http_requests_in_flight", "HTTP requests being answered")
        self.register_collector(lambda: in_flight.set(self.in_flight))
        if not self.multiprocess:  # per-process collectors have no meaning summed over processes
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = (), mode: str = "livesum") -> Gauge:
        """`mode` says how processes combine in multi-process mode: `livesum` adds up per-process state,
        `mostrecent` keeps the latest value of a shared one."""
        return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode=mode)

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = (), buckets=BUCKETS) -> Histogram:
        return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

    def register_collector(self, collect: Callable, *, shared: bool = False) -> None:
        """Run `collect()` (sync or async) before every scrape; see the module's docstring."""
        self._collectors.append((collect, shared))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request, added to this process's tally; flush() moves the tally to the instruments.

        prometheus-client's own `inc()` and `observe()` cost 3-4 µs a request in multi-process mode (three
        locked writes to memory-mapped files, each checking the process id with a system call); a tally
        per route and status costs a dictionary lookup and a bisection.
        """
        key = (method, route, status)
        tally = self._tally.get(key)
        if tally is None:
            tally = self._tally[key] = [0, 0.0, [0] * (len(BUCKETS) + 1)]
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect.bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds

    def flush(self) -> None:
        """The tally into the instruments: before every scrape, and every second in multi-process mode."""
        tally, self._tally = self._tally, {}
        for (method, route, status), (count, total, buckets) in tally.items():
            label = method if method in METHODS else "other"  # clients choose methods: bound the labels
            self._requests.labels(label, route, str(status)).inc(count)
            # Histogram.observe() takes one value; the tally adds many at once to the same series.
            duration = self._duration.labels(label, route)
            duration._sum.inc(total)  # noqa: SLF001
            for bucket, n in zip(duration._buckets, buckets):  # noqa: SLF001 - per bucket, not cumulative
                if n:
                    bucket.inc(n)

    async def collect(self, *, shared: bool = True) -> None:
        for collect, is_shared in self._collectors:
            if is_shared and not shared:
                continue
            try:
                result = collect()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - one broken collector must not break the scrape
                log.exception("metrics collector %r failed", getattr(collect, "__qualname__", collect))

    async def exposition(self) -> tuple[bytes, str]:
        self.flush()
        await self.collect()
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


METRICS = web.AppKey("metrics", Metrics)


def setup(app: web.Application) -> Metrics:
    """The app's Metrics with the built-in sources (server/metric_sources.py); called by create_app, no I/O."""
    metrics = app[METRICS] = Metrics()
    register_sources(app, metrics)
    app.cleanup_ctx.append(metrics_ctx)
    return metrics


async def _sample_forever(metrics: Metrics) -> None:
    while True:
        metrics.flush()
        await metrics.collect(shared=False)
        await asyncio.sleep(SAMPLE_INTERVAL)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """In multi-process mode, every second: this process's request tally and gauges, for the other
    processes' scrapes."""
    task = asyncio.create_task(_sample_forever(app[METRICS])) if app[METRICS].multiprocess else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    app[METRICS].flush()  # the last requests' tally, into the files the other processes still read


async def exposition(app: web.Application) -> tuple[bytes, str]:
    return await app[METRICS].exposition()


def prepare_multiprocess(config: Config) -> Path | None:
    """With WORKERS > 1, before the API processes start: an empty folder for their metric files, named in
    the environment they inherit. One process needs none; processes started some other way (several
    `serve` in one container) share a PROMETHEUS_MULTIPROC_DIR that whoever starts them empties."""
    if config.workers <= 1:
        return None
    folder = Path(config.prometheus_multiproc_dir or tempfile.mkdtemp(prefix="blog-api-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # counts of an earlier run would be added to this one's
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def remove_multiprocess_dir(folder: Path | None, config: Config) -> None:
    """After the last API process ended: remove the folder when prepare_multiprocess() made it."""
    if folder is not None and not config.prometheus_multiproc_dir:
        shutil.rmtree(folder, ignore_errors=True)
