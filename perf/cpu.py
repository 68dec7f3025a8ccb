"""CPU time per request, by process group: what a measurement cost the API, PostgreSQL, Redis and the tool.

On a machine shared with other work, req/s moves with whatever else runs; the CPU one request costs the
API processes moves much less, so it says where a difference between two targets comes from. A run of
our own stack reads the user and system time of every process of each group from /proc before and after
each tool run: the target's own processes (the service's supervisor and workers, or the baseline's
launcher and its processes: tree()), PostgreSQL's backends serving client connections and, apart, its
other processes (postmaster, checkpointer, WAL writer, autovacuum, whose work lands in whichever
measurement it overlaps), and redis-server; the tool's own time comes from the runner's waited-for
children (getrusage). Each process is read on its own, keyed by pid and start time: one that starts
during a measurement counts all its time, one that ends during it (a PostgreSQL backend whose connection
a pool closed) takes with it what it spent since the first read, so a figure is a floor. (Summing each
group's ticks before and after, as the first version did, subtracted the whole life of a process that
ended: an idle pool's backend closing while another target was loaded took that row's `db` to zero.)
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pids: Iterable[int]) -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name) of each process still there."""
    for pid in pids:
        try:
            yield pid, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def ticks(pids: Iterable[int]) -> tuple[int, int]:
    """(user, system) clock ticks of `pids` so far; a process that has ended counts nothing."""
    user = system = 0
    for _, fields in _stat(pids):
        user, system = user + int(fields[11]), system + int(fields[12])
    return user, system


def times(pids: Iterable[int]) -> dict[tuple[int, int], int]:
    """Each live process's user + system clock ticks so far, keyed by (pid, start time): a pid that the
    kernel gives to a new process is another key."""
    return {(pid, int(fields[19])): int(fields[11]) + int(fields[12]) for pid, fields in _stat(pids)}


def tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # ended meanwhile
            pass
    return found


# A backend's title (`update_process_title`): "postgres: USER DATABASE HOST(PORT) STATE".
_CLIENT_BACKEND = re.compile(rb"postgres: \S+ \S+ (\[local\]|\S+\(\d+\))")


def postgres(postmaster: int) -> tuple[list[int], list[int]]:
    """PostgreSQL's processes: (the backends serving client connections, all the others)."""
    clients, others = [], []
    for pid in tree(postmaster):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        (clients if _CLIENT_BACKEND.match(title) else others).append(pid)
    return clients, others


class Meter:
    """Seconds of CPU spent by each group (name → a function giving every pid of the group now) and by this
    process's waited-for children (`tool`): read() before and after a measurement, spent() of the two."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups

    def read(self) -> dict:
        out: dict = {name: times(pids()) for name, pids in self.groups.items()}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["tool"] = usage.ru_utime + usage.ru_stime
        return out

    @staticmethod
    def spent(before: dict, after: dict) -> dict[str, float]:
        """Seconds per group between two reads: each process's own growth, summed."""
        out = {name: round(sum(t - before[name].get(key, 0) for key, t in now.items()) / TICK, 3)
               for name, now in after.items() if name != "tool"}
        out["tool"] = round(after["tool"] - before["tool"], 3)
        return out


def per_request(spent: dict[str, float], requests: int) -> dict[str, float]:
    """Microseconds of each group's CPU per request answered."""
    return {name: round(seconds * 1e6 / max(1, requests), 1) for name, seconds in spent.items()}
