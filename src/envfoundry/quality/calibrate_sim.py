"""Coverage and verdict error rates of ``calibrate``, measured by simulation.

    python -m envfoundry.quality.calibrate_sim [--tasks-per-rate 60] [--seeds 3] [--samples 8]
                                               [--budget-factor 2] [--band 0.02,0.98]

Tasks pass with known probabilities (default 0, 0.01, 0.03, 0.1, 0.3, 0.5, 0.9, 0.97, 0.99, 1).
The rounds are those of ``calibrate`` itself: between rounds the decision is the same pure function
the real command calls (:func:`envfoundry.quality.calibrate.next_round`: verdicts, then the plan of
the next round), and the final rows come from :func:`~envfoundry.quality.calibrate.assess`, as
``difficulty.jsonl`` does; only the rollouts are replaced by numpy coin flips. Prints, per true
pass rate, how often the final interval covers it and how often each verdict is given, and which
of those verdicts are errors (``in_band`` or ``too_easy`` for a rate below the band, and so on).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .calibrate import DEFAULT_BAND, DEFAULT_SAMPLES, assess, next_round, parse_band
from .difficulty import DECIDED, TaskDifficulty, TaskEvidence

RATES = (0.0, 0.01, 0.03, 0.1, 0.3, 0.5, 0.9, 0.97, 0.99, 1.0)


@dataclass(frozen=True)
class SimTask:
    """One simulated task: its true pass rate and its final row."""

    p: float
    row: TaskDifficulty

    @property
    def covered(self) -> bool:
        return self.row.ci_lo <= self.p <= self.row.ci_hi


def wrong(verdict: str, p: float, band: tuple[float, float]) -> bool:
    """Whether a decided verdict contradicts the true pass rate ``p``."""
    lo, hi = band
    if verdict == "in_band":
        return not lo <= p <= hi
    if verdict == "too_hard":
        return p >= lo
    if verdict == "too_easy":
        return p <= hi
    return False


def simulate(
    rates: Sequence[float] = RATES, *, tasks_per_rate: int = 60, samples: int = DEFAULT_SAMPLES,
    budget: int | None = None, band: tuple[float, float] = DEFAULT_BAND, seed: int = 0, solvable: bool = True,
    max_rounds: int = 32, error_rate: float = 0.0,
) -> list[SimTask]:
    """Calibrate ``tasks_per_rate`` tasks of each true rate with coin flips (``budget`` defaults,
    as in calibrate, to 2 x tasks x samples; ``error_rate`` makes that share of rollouts errors,
    which use budget but are not samples)."""
    rng = np.random.default_rng(seed)
    p_of = {f"t{i:05d}": p for i, p in enumerate(p for p in rates for _ in range(tasks_per_rate))}
    order = list(p_of)
    budget = 2 * len(order) * samples if budget is None else budget
    evidence = {t: TaskEvidence(t) for t in order}
    slots: dict[str, int] = {}
    sampled: Counter[str] = Counter()
    used = offset = 0
    for _ in range(max_rounds):
        plan = next_round(order, evidence, slots, sampled, band=band, solvable=solvable, samples=samples,
                          budget_left=budget - used)
        if plan is None:
            break
        ids, k = plan
        passes = rng.random((len(ids), k)) < np.array([p_of[t] for t in ids])[:, None]
        errors = rng.random((len(ids), k)) < error_rate
        for t, got, err in zip(ids, passes.tolist(), errors.tolist(), strict=True):
            ev = evidence[t]
            for i, (ok, bad) in enumerate(zip(got, err, strict=True)):
                if bad:
                    ev.errors += 1
                else:
                    ev.add(offset + i, float(ok), ok)
            slots[t] = slots.get(t, 0) + k
            sampled[t] += 1
        used += len(ids) * k
        offset += k
    rows = assess(order, evidence, sampled, band=band, solvable=solvable)
    return [SimTask(p_of[t], rows[t]) for t in order]


@dataclass(frozen=True)
class RateStats:
    """What the simulation found for one true pass rate."""

    p: float
    tasks: int
    coverage: float
    verdicts: dict[str, float]  # share of tasks per verdict ("undecided": uncertain + floor_unverified)
    error: float  # share of tasks with a decided verdict that contradicts p
    mean_n: float


def by_rate(tasks: Sequence[SimTask], band: tuple[float, float]) -> list[RateStats]:
    out = []
    for p in sorted({t.p for t in tasks}):
        group = [t for t in tasks if t.p == p]
        m = len(group)
        names = Counter(t.row.verdict if t.row.verdict in DECIDED else "undecided" for t in group)
        out.append(RateStats(
            p=p, tasks=m, coverage=sum(t.covered for t in group) / m,
            verdicts={v: names[v] / m for v in ("too_hard", "in_band", "too_easy", "undecided")},
            error=sum(wrong(t.row.verdict, p, band) for t in group) / m,
            mean_n=sum(t.row.n for t in group) / m,
        ))
    return out


def report(tasks: Sequence[SimTask], band: tuple[float, float]) -> str:
    """The table the command prints."""
    lines = [f"{'p_true':>7} {'tasks':>6} {'coverage':>9} {'too_hard':>9} {'in_band':>8} {'too_easy':>9} "
             f"{'undecided':>10} {'wrong':>7} {'mean n':>8}"]
    for s in by_rate(tasks, band):
        v = s.verdicts
        lines.append(f"{s.p:>7g} {s.tasks:>6} {s.coverage:>9.1%} {v['too_hard']:>9.1%} {v['in_band']:>8.1%} "
                     f"{v['too_easy']:>9.1%} {v['undecided']:>10.1%} {s.error:>7.1%} {s.mean_n:>8.1f}")
    n = len(tasks)
    covered = sum(t.covered for t in tasks)
    errors = sum(wrong(t.row.verdict, t.p, band) for t in tasks)
    lines.append(f"{'all':>7} {n:>6} {covered / n:>9.1%}   ({covered} of {n} intervals cover the true rate; "
                 f"{errors} wrong verdicts)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Coverage and verdict error rates of calibrate, by simulation.")
    ap.add_argument("--tasks-per-rate", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=3, help="independent runs, seeds 0..N-1, pooled")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--budget-factor", type=float, default=2.0, help="budget = factor x tasks x samples")
    ap.add_argument("--band", default=",".join(f"{x:g}" for x in DEFAULT_BAND))
    ap.add_argument("--rates", default=",".join(f"{x:g}" for x in RATES))
    ap.add_argument("--error-rate", type=float, default=0.0)
    a = ap.parse_args(argv)
    band = parse_band(a.band)
    rates = [float(x) for x in a.rates.split(",")]
    budget = int(a.budget_factor * len(rates) * a.tasks_per_rate * a.samples)
    tasks: list[SimTask] = []
    for seed in range(a.seeds):
        tasks += simulate(rates, tasks_per_rate=a.tasks_per_rate, samples=a.samples, budget=budget, band=band,
                          seed=seed, error_rate=a.error_rate)
    print(f"calibrate, simulated: {len(rates)} rates x {a.tasks_per_rate} tasks x {a.seeds} seeds, "
          f"samples {a.samples}, budget {budget} per seed ({a.budget_factor:g} x tasks x samples), band {band}")
    print(report(tasks, band))


if __name__ == "__main__":
    main()
