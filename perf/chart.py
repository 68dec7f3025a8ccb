"""latency.png: latency by percentile for every measurement of a run, one panel per scenario."""

from __future__ import annotations

import math
from pathlib import Path

from .tools import PERCENTILES


def _nines(p: float) -> float:
    """x position of a percentile: 90 → 1, 99 → 2, 99.9 → 3 (HdrHistogram's usual axis)."""
    return -math.log10(1 - p / 100)


def draw(entries: list[dict], path: Path) -> bool:
    """Write the chart; False (and no file) when matplotlib is not installed (`pip install -e '.[perf]'`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(dict.fromkeys(e["scenario"] for e in entries))
    columns = min(3, len(names)) or 1
    rows = math.ceil(len(names) / columns) or 1
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows), squeeze=False)
    xs = [_nines(float(p)) for p in PERCENTILES]
    for ax, name in zip(axes.flat, names):
        for e in (e for e in entries if e["scenario"] == name):
            label = f"{e['target']}{' cache ' + e['cache'] if e.get('cache') else ''} {e['tool']}"
            label += "" if e["mode"] == "closed" else f" @{e['rate']}/s"
            ys = [max(e["latency_ms"][f"p{p}"], 0.001) for p in PERCENTILES]
            ax.plot(xs, ys, marker="o", markersize=3, label=label, linestyle="-" if e["mode"] == "closed" else "--")
        ax.set_title(name)
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{p}%" for p in PERCENTILES], fontsize=7)
        ax.set_ylabel("latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
