"""The figures of a fault-suite run: printed at its end, and written to FAULTS_REPORT as Markdown."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

FIGURES: dict[str, dict] = {}


def record(case: str, figures: dict) -> None:
    FIGURES[case] = figures


def report(variant: str, terminal=None) -> None:
    if not FIGURES:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Fault suite, {variant} variant, {stamp}, {os.cpu_count()} CPUs", ""]
    for case, figures in FIGURES.items():
        lines.append(f"- **{case}**: " + "; ".join(f"{k}: {_text(v)}" for k, v in figures.items()))
    text = "\n".join(lines) + "\n"
    if terminal is not None:  # past pytest's capture
        terminal.write_line("\n" + text)
    if target := os.environ.get("FAULTS_REPORT"):
        Path(target).write_text(text)
    FIGURES.clear()


def _text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    return str(value)
