"""Per-task difficulty for one model: pass rates with Wilson intervals, band verdicts, GRPO
zero-variance shares and pass rate by difficulty knob.

Verdict rules, with a band ``[lo, hi]`` of useful pass rates and the 95% Wilson interval
``[ci_lo, ci_hi]`` of a task's pass rate over its ``n`` scored samples (error outcomes are never
samples):

- ``too_easy``: ``ci_lo > hi`` (the model clearly passes too often to learn from it);
- ``too_hard``: ``ci_hi < lo``. With 0 passes that takes many samples: 0/16 still leaves
  ``ci_hi`` = 0.19, and ``ci_hi < 0.02`` needs 0/189;
- ``in_band``: ``lo <= ci_lo`` and ``ci_hi <= hi``;
- ``floor_unverified``: 0 passes so far, ``ci_hi >= lo``, and the environment has a reference
  solution, so the task is known to be solvable but this model has not solved it yet;
- ``uncertain``: anything else (the interval straddles a band edge, or no scored sample yet).

The first three are *decided*: calibration stops sampling them. The other two get more samples
while the budget lasts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.stats import mean_over_tasks, wilson

VERDICTS = ("too_easy", "in_band", "too_hard", "floor_unverified", "uncertain")
DECIDED = frozenset({"too_easy", "in_band", "too_hard"})
#: metadata values with more distinct values than this are not treated as knobs
MAX_KNOB_VALUES = 24


def verdict(passes: int, n: int, band: tuple[float, float], *, solvable: bool) -> str:
    """The band verdict of a task with ``passes`` out of ``n`` scored samples (rules above)."""
    if n <= 0:
        return "uncertain"
    lo, hi = band
    ci_lo, ci_hi = wilson(passes, n)
    if ci_lo > hi:
        return "too_easy"
    if ci_hi < lo:
        return "too_hard"
    if lo <= ci_lo and ci_hi <= hi:
        return "in_band"
    if passes == 0 and solvable:
        return "floor_unverified"
    return "uncertain"


@dataclass
class TaskEvidence:
    """The scored samples of one task, ``(sample index, score, passed)``, and its error count."""

    task_id: str
    samples: dict[int, tuple[float, bool]] = field(default_factory=dict)
    errors: int = 0

    def add(self, sample: int, score: float, passed: bool) -> None:
        self.samples[sample] = (float(score), bool(passed))

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def passes(self) -> int:
        return sum(p for _, p in self.samples.values())

    def first(self, k: int) -> list[tuple[float, bool]]:
        """The first ``k`` scored samples by sample index: the task's GRPO group."""
        return [self.samples[i] for i in sorted(self.samples)[:k]]


@dataclass(frozen=True)
class TaskDifficulty:
    """One line of ``difficulty.jsonl``."""

    task_id: str
    n: int
    passes: int
    errors: int
    p_hat: float | None
    ci_lo: float
    ci_hi: float
    verdict: str
    knobs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "n": self.n, "passes": self.passes, "errors": self.errors,
            "p_hat": self.p_hat, "ci_lo": self.ci_lo, "ci_hi": self.ci_hi, "verdict": self.verdict,
            "knobs": self.knobs,
        }


def knobs_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The difficulty knobs in a task's metadata: its scalar values (str, int, float, bool)."""
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}


def difficulty(
    ev: TaskEvidence, band: tuple[float, float], *, solvable: bool, knobs: dict[str, Any]
) -> TaskDifficulty:
    lo, hi = wilson(ev.passes, ev.n)
    return TaskDifficulty(
        task_id=ev.task_id, n=ev.n, passes=ev.passes, errors=ev.errors,
        p_hat=ev.passes / ev.n if ev.n else None, ci_lo=lo, ci_hi=hi,
        verdict=verdict(ev.passes, ev.n, band, solvable=solvable), knobs=knobs,
    )


def in_bounds(p_hat: float | None, band: tuple[float, float]) -> bool:
    """The min/max-accuracy filter of trainers' data pipelines: keep ``lo <= p_hat <= hi``."""
    return p_hat is not None and band[0] <= p_hat <= band[1]


def shares(rows: Sequence[TaskDifficulty]) -> dict[str, dict[str, float | int]]:
    """Count and share of tasks per verdict."""
    n = len(rows)
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    return {v: {"tasks": c, "share": c / n if n else 0.0} for v, c in counts.items()}


def zero_variance(groups: Iterable[Sequence[tuple[float, bool]]]) -> dict[str, Any]:
    """Share of GRPO groups whose rewards are all equal (no learning signal for GRPO)."""
    gs = list(groups)
    zero = sum(1 for g in gs if len({s for s, _ in g}) == 1)
    return {"groups": len(gs), "zero_variance": zero, "share": zero / len(gs) if gs else None}


def group_metrics(
    evidence: Mapping[str, TaskEvidence], rows: Sequence[TaskDifficulty], *, samples: int,
    band: tuple[float, float],
) -> dict[str, Any]:
    """pass@k, pass^k and zero-variance shares over each task's first ``samples`` scored samples.

    Only tasks with a full group count. Using the first (non-adaptive) group keeps pass@k free of
    the bias that adaptive stopping would add.
    """
    full = {r.task_id: evidence[r.task_id].first(samples) for r in rows if evidence[r.task_id].n >= samples}
    counts = Counter((len(g), sum(p for _, p in g)) for g in full.values())  # tasks per (n, c)
    in_band = [full[r.task_id] for r in rows if r.verdict == "in_band" and r.task_id in full]
    kept = [full[r.task_id] for r in rows if in_bounds(r.p_hat, band) and r.task_id in full]
    ks = range(1, samples + 1)
    return {
        "group_tasks": len(full),
        "mean_pass_rate": mean_over_tasks(counts, 1),
        "pass_at_k": {str(k): mean_over_tasks(counts, k) for k in ks},
        "pass_hat_k": {str(k): mean_over_tasks(counts, k, all_k=True) for k in ks},
        "zero_variance": {
            "before": zero_variance(full.values()),
            "after_in_band": zero_variance(in_band),
            "after_keep": zero_variance(kept),
        },
    }


def knob_table(
    rows: Sequence[TaskDifficulty], *, counts: Mapping[str, tuple[int, int]] | None = None,
    max_values: int = MAX_KNOB_VALUES,
) -> dict[str, list[dict[str, Any]]]:
    """Pass rate by value of each knob: tasks grouped by the knob's value, ``(n, passes)`` pooled
    (``counts`` per task id, default each row's; calibrate passes each task's first-K group so
    that adaptively resampled tasks do not weigh more), with a Wilson interval. The interval treats
    samples as independent; samples of one task are not, so read it as a lower bound on the
    uncertainty. Knobs with one value or more than ``max_values`` values (ids, text) are left out."""
    values: dict[str, dict[Any, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for r in rows:
        n, c = counts[r.task_id] if counts is not None else (r.n, r.passes)
        for k, v in r.knobs.items():
            acc = values[k][v]
            acc[0] += 1
            acc[1] += n
            acc[2] += c
    table: dict[str, list[dict[str, Any]]] = {}
    for k in sorted(values):
        by_value = values[k]
        if not 2 <= len(by_value) <= max_values:
            continue
        out = []
        for v in sorted(by_value, key=_sort_key):
            t, n, c = by_value[v]
            lo, hi = wilson(c, n)
            out.append({"value": v, "tasks": t, "samples": n, "passes": c,
                        "pass_rate": c / n if n else None, "ci_lo": lo, "ci_hi": hi})
        table[k] = out
    return table


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, float(v)) if isinstance(v, (int, float)) else (1, str(v))
