"""Small statistics used by summaries and calibration: Wilson intervals and pass@k / pass^k.

pass@k and pass^k are ratios of binomial coefficients. They are computed as a product of
``min(k, c)`` factors (never more than the number of samples) in log space, not as exact big
integers: a group of 20,000 samples costs microseconds, and the figure is within ~1e-12 of the
exact ratio. Summaries show them for a bounded set of k (:func:`summary_ks`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from fractions import Fraction

Z95 = 1.959963984540054
#: products with more factors than this are summed with numpy (pairwise), fewer with math.fsum
_VECTOR_FROM = 64


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


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` (a, b > 0, 0 <= x <= 1), from its
    continued fraction (DLMF 8.17.22), evaluated where it converges fast and mirrored elsewhere."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - betainc(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b) - math.log(a)
    # 1 / (1 + d1 / (1 + d2 / (1 + ...))) by the modified Lentz method
    tiny = 1e-300
    f, c, d = tiny, tiny, 0.0
    for j in range(1, 100_000):
        if j == 1:
            num = 1.0
        else:
            i = j - 1  # the coefficient d_i
            m = i // 2
            if i % 2:
                num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            else:
                num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return min(1.0, max(0.0, math.exp(log_front) * f))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_quantile(a: float, b: float, y: float) -> float:
    """The x in (0, 1) with ``I_x(a, b) = y``: Newton steps kept inside a shrinking bracket."""
    lo, hi = 0.0, 1.0
    x = min(max(a / (a + b), 1e-12), 1 - 1e-12)
    lb = _log_beta(a, b)
    for _ in range(400):
        g = betainc(a, b, x) - y
        if g == 0.0:
            return x
        if g > 0:
            hi = x
        else:
            lo = x
        log_pdf = (a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - lb
        nx = x - g / math.exp(log_pdf) if -700 < log_pdf < 700 else -1.0
        if not lo < nx < hi:  # Newton left the bracket: halve it instead
            nx = (lo + hi) / 2
        if abs(nx - x) <= 1e-13 * min(x, 1 - x) or hi - lo <= 1e-300:
            return nx
        x = nx
    return x


def clopper_pearson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``1 - alpha`` interval for a binomial proportion: each side
    errs with probability at most ``alpha / 2`` whatever the true proportion (Wilson's interval
    does not promise that near 0 and 1). ``(0, 1)`` when n == 0."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    half = alpha / 2
    lo = 0.0 if successes == 0 else (
        half ** (1 / n) if successes == n else _beta_quantile(successes, n - successes + 1, half))
    hi = 1.0 if successes == n else (
        1 - half ** (1 / n) if successes == 0 else _beta_quantile(successes + 1, n - successes, 1 - half))
    return (lo, hi)


def _check(n: int, c: int, k: int, what: str) -> None:
    if k < 1:
        raise ValueError(f"{what} needs k >= 1, got {k}")
    if k > n:
        raise ValueError(f"{what} needs at least {k} samples, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"{what}: correct samples must be in [0, {n}], got {c}")


def comb_ratio(n: int, a: int, k: int) -> float:
    """``C(n - a, k) / C(n, k)``: the chance that k of n samples drawn without replacement all
    miss ``a`` marked ones. Needs ``0 <= a <= n`` and ``0 <= k <= n``.

    Equal to ``prod_{i<k} (1 - a/(n-i))`` and, by symmetry, to ``prod_{j<a} (1 - k/(n-j))``: the
    shorter product is taken, ``min(a, k)`` factors, summed as logarithms (``log1p`` for factors
    near 1, ``log`` of the exact quotient for the others, so each term is accurate to a rounding).
    """
    if a + k > n:
        return 0.0
    m, b = (a, k) if a < k else (k, a)  # m factors of (1 - b/(n-i))
    if m == 0:
        return 1.0
    if m < _VECTOR_FROM:
        terms = []
        for i in range(m):
            d = n - i
            x = b / d
            terms.append(math.log1p(-x) if x < 0.5 else math.log((d - b) / d))
        return math.exp(math.fsum(terms))
    import numpy as np  # here, not at the top: the CLI starts without it

    d = float(n) - np.arange(m, dtype=np.float64)
    x = b / d
    with np.errstate(divide="ignore", invalid="ignore"):
        near = np.log1p(-np.minimum(x, 0.5))
        far = np.log((d - b) / d)
    return math.exp(float(np.sum(np.where(x < 0.5, near, far))))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct (Chen et al., 2021):
    ``1 - C(n - c, k) / C(n, k)``."""
    _check(n, c, k, f"pass@{k}")
    return 1.0 - comb_ratio(n, c, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass^k, the chance that k fresh samples all succeed:
    ``C(c, k) / C(n, k)``."""
    _check(n, c, k, f"pass^{k}")
    return comb_ratio(n, n - c, k)


def summary_ks(samples: int) -> list[int]:
    """The k that summaries report: 1, 2, 4, 8, ... up to ``samples``, and ``samples`` itself
    (``floor(log2(samples)) + 2`` values at most: 16 for 20,000 samples, 21 for a million)."""
    ks = [1 << i for i in range(max(samples, 0).bit_length())]
    if samples >= 1 and ks[-1] != samples:
        ks.append(samples)
    return ks


def mean_over_tasks(per_task: Iterable[tuple[int, int]] | Counter[tuple[int, int]], k: int, *,
                    all_k: bool = False) -> float | None:
    """Mean pass@k (or pass^k) over tasks with at least k scored samples; None if there are none.

    ``per_task`` holds each task's (n scored, c passed), or is a Counter of those pairs (how many
    tasks have each: pass one when calling for many k). Tasks with the same pair share one value,
    so it is computed once per distinct pair (a run of thousands of tasks has a few dozen). The
    sum is exact, as ``math.fsum`` of every task's value would be, so the result does not depend
    on the order in which records arrived. The cost is ``min(k, c)`` per distinct pair.
    """
    groups = per_task if isinstance(per_task, Counter) else Counter(per_task)
    fn = pass_hat_k if all_k else pass_at_k
    total, tasks = Fraction(0), 0
    for (n, c), m in groups.items():
        if n >= k and m > 0:
            total += Fraction(fn(n, c, k)) * m
            tasks += m
    return float(total) / tasks if tasks else None


def at_k_table(per_task: Iterable[tuple[int, int]] | Counter[tuple[int, int]], samples: int, *,
               all_k: bool = False) -> dict[str, float | None]:
    """``{str(k): mean pass@k (or pass^k)}`` for each k of :func:`summary_ks`, as a summary stores it."""
    groups = per_task if isinstance(per_task, Counter) else Counter(per_task)
    return {str(k): mean_over_tasks(groups, k, all_k=all_k) for k in summary_ks(samples)}
