"""The machine's speed at the start and end of a run, by FIELD-NOTES.md's gauge: a bare aiohttp JSON route
on uvloop in one process under `wrk -t1 -c64` for a few seconds.

On a shared VM the same code's figures move with the machine: on 2026-12-02 this gauge read 17.3k req/s
before one full run and 7.6k after the next, and login (one argon2id hash of fixed cost) served 46 and 32
req/s in them. A ratio measured within one run does not need the gauge, since both targets meet the same
machine; an absolute figure (req/s, p95 at 100 connections, p99 at 1,000 req/s) does, so every report
carries it. `python -m perf.calibrate` prints one reading; `python -m perf.calibrate serve PORT` is the
route itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import uvloop
from aiohttp import web

from server.embedded import free_port

from .stack import start, stop, wait_ready

SECONDS = 5
CONNECTIONS = 64
METHOD = f"a bare aiohttp JSON route on uvloop under wrk -t1 -c{CONNECTIONS} -d{SECONDS}s"  # as reports say it


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", _ok)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def gauge(seconds: int = SECONDS) -> int | None:
    """Requests per second the bare route answers under wrk, or None when wrk is missing or failed."""
    if not shutil.which("wrk"):
        return None
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start(["-m", "perf.calibrate", "serve", str(port)], dict(os.environ), subprocess.DEVNULL)
    try:
        wait_ready(url, proc, timeout=30)
        out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", url], capture_output=True,
                             text=True, timeout=seconds + 30, check=False, start_new_session=True)
    except (RuntimeError, subprocess.TimeoutExpired):
        return None
    finally:
        stop(proc)
    found = re.search(r"^Requests/sec:\s+([\d.]+)", out.stdout, re.M)
    return round(float(found.group(1))) if out.returncode == 0 and found else None


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    else:
        reading = gauge()
        print("no reading: wrk is missing or failed" if reading is None else
              f"{reading:,.0f} req/s ({METHOD})")
        sys.exit(reading is None)
