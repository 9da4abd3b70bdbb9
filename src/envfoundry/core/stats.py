"""Small statistics used by summaries and calibration: Wilson intervals and pass@k."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from fractions import Fraction

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (0, 1 when n == 0)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass^k: the chance that k fresh samples all succeed."""
    if k > n:
        raise ValueError(f"pass^{k} needs at least {k} samples, got {n}")
    return math.comb(c, k) / math.comb(n, k)


def mean_over_tasks(per_task: Iterable[tuple[int, int]] | Counter[tuple[int, int]], k: int, *,
                    all_k: bool = False) -> float | None:
    """Mean pass@k (or pass^k) over tasks with at least k scored samples; None if there are none.

    ``per_task`` holds each task's (n scored, c passed), or is a Counter of those pairs (how many
    tasks have each: pass one when calling for many k). Tasks with the same pair share one value,
    so it is computed once per distinct pair (a run of thousands of tasks has a few dozen). The
    sum is exact, as ``math.fsum`` of every task's value would be, so the result does not depend
    on the order in which records arrived.
    """
    groups = per_task if isinstance(per_task, Counter) else Counter(per_task)
    fn = pass_hat_k if all_k else pass_at_k
    total, tasks = Fraction(0), 0
    for (n, c), m in groups.items():
        if n >= k and m > 0:
            total += Fraction(fn(n, c, k)) * m
            tasks += m
    return float(total) / tasks if tasks else None
