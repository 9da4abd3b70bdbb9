"""The evidence of a training run: ``reward_curve.png`` and ``report.md`` with the before/after table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.files import atomic_write_text
from ..core.outcome import Outcome
from ..core.stats import wilson


def eval_row(summary: dict[str, Any]) -> dict[str, Any]:
    """Pass rate with its 95% Wilson interval from a run summary (errors are not in the denominator)."""
    scored, passed = int(summary.get("n_scored") or 0), int(summary.get("passes") or 0)
    errors = int(summary.get("n_errors") or 0)
    rate = passed / scored if scored else None
    lo, hi = wilson(passed, scored)
    return {"tasks": scored + errors, "scored": scored, "passed": passed, "pass_rate": rate,
            "ci95": [lo, hi], "mean_score": summary.get("mean_score"), "errors": errors}


def verdict(before: dict[str, Any], after: dict[str, Any]) -> str:
    """One sentence: did the held-out pass rate rise beyond the 95% intervals?"""
    if before["pass_rate"] is None or after["pass_rate"] is None:
        return "no verdict: an evaluation has no scored rollout"
    if after["ci95"][0] > before["ci95"][1]:
        return "the held-out pass rate rose, and the 95% intervals do not overlap"
    if after["ci95"][1] < before["ci95"][0]:
        return "the held-out pass rate fell, and the 95% intervals do not overlap"
    return "no significant change: the 95% intervals overlap"


def plot_reward_curve(log: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Reward mean +- std per step, and the share of groups with zero reward variance."""
    rows = [r for r in log if r.get("reward") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    mean = [r["reward"] for r in rows]
    std = [r.get("reward_std") or 0.0 for r in rows]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=(3, 1.4))
    ax.plot(steps, mean, marker="o", ms=3, label="reward mean")
    ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                    [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2, label="± std")
    if len(mean) >= 5:
        avg = [sum(mean[max(0, i - 4):i + 1]) / len(mean[max(0, i - 4):i + 1]) for i in range(len(mean))]
        ax.plot(steps, avg, color="black", lw=2, label="mean of the last 5 steps")
    ax.set_ylabel("reward (masked errors excluded)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    zero = [r.get("frac_reward_zero_std") for r in rows]
    ax2.bar(steps, [z if z is not None else 0.0 for z in zero], color="tab:gray", label="zero-variance groups")
    masked = [r.get("envfoundry/masked") or 0.0 for r in rows]
    if any(masked):
        ax2.plot(steps, [m / max(1.0, r.get("completions", 1.0)) for m, r in zip(masked, rows, strict=True)],
                 color="tab:red", marker="x", label="masked (errors)")
    ax2.set_ylabel("share")
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("step")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def write_report(
    out: str | Path,
    *,
    config: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    log: Sequence[dict[str, Any]],
    totals: dict[str, int],
    timings: dict[str, float],
) -> Path:
    """Write ``report.md`` (and ``results.json`` with the same figures) into ``out``."""
    outp = Path(out)
    b, a = eval_row(before), eval_row(after)
    lines = [
        f"# Training report: {config.get('env')} with {config.get('model')}",
        "",
        f"Held-out evaluation on split `{config.get('eval_split')}` ({config.get('eval_tasks')} tasks, "
        f"{config.get('eval_decoding')}), through the rollout engine. Errors are excluded from the pass rate.",
        "",
        "| model | tasks | scored | passed | pass rate | 95% CI (Wilson) | mean score | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (("before", b), ("after", a)):
        lines.append(
            f"| {name} | {r['tasks']} | {r['scored']} | {r['passed']} | {_pct(r['pass_rate'])} | "
            f"[{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}] | {_num(r['mean_score'])} | {r['errors']} |"
        )
    lines += ["", f"**Verdict:** {verdict(b, a)}.", ""]
    steps = [r for r in log if r.get("reward") is not None]
    masked = sum(totals.get(o, 0) for o in Outcome.CODE_ERRORS)
    lines += [
        "## Training",
        "",
        f"{len(steps)} steps; {sum(totals.values())} completions scored by the environment's graders, "
        f"{masked} masked as errors (never rewarded 0: env_error {totals.get('env_error', 0)}, "
        f"grader_error {totals.get('grader_error', 0)}).",
        "",
        "Configuration: " + ", ".join(f"`{k}={v}`" for k, v in config.items()),
        "",
        "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
        "![reward curve](reward_curve.png)",
        "",
        "| step | reward mean | reward std | zero-variance groups | masked |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in steps:
        lines.append(f"| {r['step']} | {_num(r.get('reward'))} | {_num(r.get('reward_std'))} | "
                     f"{_pct(r.get('frac_reward_zero_std'))} | {int(r.get('envfoundry/masked') or 0)} |")
    path = outp / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")  # whole or not at all: a kill keeps the last report
    atomic_write_text(outp / "results.json", json.dumps(
        {"before": b, "after": a, "verdict": verdict(b, a), "totals": totals, "timings": timings,
         "config": config}, indent=2, default=str))
    return path
