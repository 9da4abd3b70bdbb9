"""Calibration plots (matplotlib, Agg backend): per-task pass-rate histogram and pass rate by knob.

matplotlib is optional (``pip install 'envfoundry[plots]'``); :func:`install_hint` is the exact
command for this interpreter.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .difficulty import VERDICTS, TaskDifficulty

_COLOURS = {
    "too_easy": "#4c72b0", "in_band": "#55a868", "too_hard": "#c44e52",
    "floor_unverified": "#dd8452", "uncertain": "#8c8c8c",
}


def install_hint() -> str:
    """The command that installs the plotting extra into the running interpreter."""
    return f"{shlex.quote(sys.executable)} -m pip install 'matplotlib>=3.8'"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pass_rates(
    rows: Sequence[TaskDifficulty], band: tuple[float, float], path: Path, *, title: str, bins: int = 20
) -> Path:
    """Histogram of per-task pass rates, stacked by verdict, with the band shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        edges = [i / bins for i in range(bins + 1)]
        data, labels, colours = [], [], []
        for v in VERDICTS:
            ps = [r.p_hat for r in rows if r.verdict == v and r.p_hat is not None]
            if ps:
                data.append(ps)
                labels.append(f"{v} ({len(ps)})")
                colours.append(_COLOURS[v])
        ax.axvspan(band[0], band[1], color="#55a868", alpha=0.08, lw=0)
        for x in band:
            ax.axvline(x, color="#333333", ls="--", lw=1)
        if data:
            ax.hist(data, bins=edges, stacked=True, label=labels, color=colours, edgecolor="white", lw=0.5)
            ax.legend(title="verdict", fontsize=8, title_fontsize=8, loc="upper center")
        ax.set_xlim(0, 1)
        ax.set_xlabel("per-task pass rate (p_hat)")
        ax.set_ylabel("tasks")
        ax.set_title(f"{title}\nband [{band[0]:g}, {band[1]:g}] dashed", fontsize=10)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_knobs(
    table: dict[str, list[dict[str, Any]]], band: tuple[float, float], path: Path, *, title: str
) -> Path:
    """One panel per knob: pooled pass rate by knob value with its Wilson interval."""
    plt = _pyplot()
    knobs = list(table) or ["(no knobs)"]
    cols = min(3, len(knobs))
    rows_n = (len(knobs) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), dpi=110, squeeze=False)
    try:
        for ax, knob in zip(axes.flat, knobs, strict=False):
            entries = table.get(knob, [])
            xs = list(range(len(entries)))
            ys = [e["pass_rate"] or 0.0 for e in entries]
            err = [[y - e["ci_lo"] for y, e in zip(ys, entries, strict=True)],
                   [e["ci_hi"] - y for y, e in zip(ys, entries, strict=True)]]
            ax.axhspan(band[0], band[1], color="#55a868", alpha=0.08, lw=0)
            if entries:
                ax.errorbar(xs, ys, yerr=err, fmt="o-", color="#4c72b0", capsize=3, ms=4)
            ax.set_xticks(xs, [str(e["value"]) for e in entries], fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(knob, fontsize=9)
            ax.set_ylabel("pass rate", fontsize=8)
        for ax in list(axes.flat)[len(knobs):]:
            ax.set_visible(False)
        fig.suptitle(f"{title}: pass rate by knob (first-K samples of each task pooled, 95% Wilson)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
