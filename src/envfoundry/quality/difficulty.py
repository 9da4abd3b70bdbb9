"""Per-task difficulty for one model: pass rates with confidence intervals, band verdicts, GRPO
zero-variance shares and pass rate by difficulty knob.

Intervals. A task's interval ``[ci_lo, ci_hi]`` is an exact (Clopper-Pearson) interval on its
pass rate over its ``n`` scored samples (error outcomes are never samples), at the level its
*round* allows: calibration looks at a task after every round that sampled it and stops as soon as
the verdict is decided, and a fixed 95% interval does not keep 95% coverage under such optional
stopping (looking again until the interval clears an edge is a second, third, ... chance to be
wrong). So the 5% error is spent across rounds: the interval after a task's ``j``-th round errs
with probability at most ``alpha_j = 0.05 * 6 / (pi^2 j^2)`` (3.04%, 0.76%, 0.34%, ... summing to
5%), each side at most half of it. By the union bound the interval a task ends with, whenever it
stopped, covers the true pass rate with probability at least 95%, and a task whose pass rate lies
outside the band is declared ``in_band`` with probability at most 2.5% (the interval would have
to miss it on one side). This needs only that how many samples a task gets at its ``j``-th round
does not depend on its own outcomes (true of :func:`~envfoundry.quality.calibrate.plan_round`:
it depends on the budget and on the other tasks). Clopper-Pearson, not Wilson: Wilson's
interval does not promise its level near 0 and 1, where the band edges are.

Verdict rules, with a band ``[lo, hi]`` of useful pass rates:

- ``too_easy``: ``ci_lo > hi`` (the model clearly passes too often to learn from it);
- ``too_hard``: ``ci_hi < lo``. With 0 passes that takes many samples: 0/16 still leaves
  ``ci_hi`` = 0.23, and ``ci_hi < 0.02`` needs 0/208 in a task's first round;
- ``in_band``: ``lo <= ci_lo`` and ``ci_hi <= hi`` (the evidence separates the pass rate from both
  edges: 1 pass in 8 does not, 2 in 8 does for the band [0.02, 0.98]);
- ``floor_unverified``: 0 passes so far, ``ci_hi >= lo``, and the environment has a reference
  solution, so the task is known to be solvable but this model has not solved it yet;
- ``uncertain``: anything else (the interval straddles a band edge, or no scored sample yet).

The first three are *decided*: calibration stops sampling them. The other two get more samples
while the budget lasts.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.stats import at_k_table, clopper_pearson, mean_over_tasks, wilson

VERDICTS = ("too_easy", "in_band", "too_hard", "floor_unverified", "uncertain")
DECIDED = frozenset({"too_easy", "in_band", "too_hard"})
#: metadata values with more distinct values than this are not treated as knobs
MAX_KNOB_VALUES = 24
#: the error all of a task's intervals share: its final interval covers with at least 1 - ALPHA
ALPHA = 0.05


def round_alpha(rounds: int, alpha: float = ALPHA) -> float:
    """The error spent on a task's interval after its ``rounds``-th round: ``alpha * 6 / (pi^2
    rounds^2)``, so that the sum over every round is ``alpha`` (a task not yet sampled: round 1)."""
    j = max(1, rounds)
    return alpha * 6 / (math.pi**2 * j * j)


@functools.lru_cache(maxsize=65536)
def interval(passes: int, n: int, rounds: int = 1) -> tuple[float, float]:
    """The task's interval after ``rounds`` rounds: Clopper-Pearson at ``1 - round_alpha(rounds)``."""
    return clopper_pearson(passes, n, round_alpha(rounds))


def verdict(passes: int, n: int, band: tuple[float, float], *, solvable: bool, rounds: int = 1) -> str:
    """The band verdict of a task with ``passes`` out of ``n`` scored samples after ``rounds``
    rounds (rules above)."""
    if n <= 0:
        return "uncertain"
    lo, hi = band
    ci_lo, ci_hi = interval(passes, n, rounds)
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
    rounds: int = 1  # rounds that sampled the task: the interval's level is 1 - round_alpha(rounds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "n": self.n, "passes": self.passes, "errors": self.errors,
            "p_hat": self.p_hat, "ci_lo": self.ci_lo, "ci_hi": self.ci_hi, "verdict": self.verdict,
            "knobs": self.knobs, "rounds": self.rounds,
        }


def knobs_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The difficulty knobs in a task's metadata: its scalar values (str, int, float, bool)."""
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}


def difficulty(
    ev: TaskEvidence, band: tuple[float, float], *, solvable: bool, knobs: dict[str, Any], rounds: int = 1
) -> TaskDifficulty:
    """A task's row after ``rounds`` rounds sampled it (its interval, p_hat and verdict)."""
    n, passes = ev.n, ev.passes
    lo, hi = interval(passes, n, rounds)
    return TaskDifficulty(
        task_id=ev.task_id, n=n, passes=passes, errors=ev.errors,
        p_hat=passes / n if n else None, ci_lo=lo, ci_hi=hi,
        verdict=verdict(passes, n, band, solvable=solvable, rounds=rounds), knobs=knobs, rounds=rounds,
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
    return {
        "group_tasks": len(full),
        "mean_pass_rate": mean_over_tasks(counts, 1),
        "pass_at_k": at_k_table(counts, samples),  # k = 1, 2, 4, ... and samples
        "pass_hat_k": at_k_table(counts, samples, all_k=True),
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
