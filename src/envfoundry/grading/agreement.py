"""Agreement metrics for auditing graders against labels (numpy only).

Each function follows the convention of the reference implementation it is tested against, to
1e-9: :func:`accuracy`, :func:`confusion_matrix`, :func:`cohen_kappa` (unweighted, linear,
quadratic; weights by label *index*) and :func:`precision_recall` as scikit-learn (undefined
kappa is ``nan``, undefined precision/recall 0); :func:`spearman` (average ranks) and
:func:`kendall_tau` (tau-b) as scipy.stats; :func:`krippendorff_alpha` (nominal, ordinal,
interval; several coders, missing values as ``nan``) as the ``krippendorff`` package.
:func:`pairwise_agreement` is the observed agreement among several coders.
:func:`bootstrap_ci` gives percentile intervals from a seeded resampling of items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Level = str  # "nominal" | "ordinal" | "interval"


def _pair(a: Sequence[Any], b: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two 1-d sequences of equal length, got shapes {x.shape} and {y.shape}")
    return x, y


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf"


def unique_labels(*ys: Sequence[Any]) -> list[Any]:
    """Sorted union of the labels (scikit-learn's order)."""
    arrs = [np.asarray(y) for y in ys]
    if all(_numeric(a) for a in arrs):
        return np.unique(np.concatenate([a.ravel() for a in arrs])).tolist() if arrs else []
    return sorted(set().union(*(a.tolist() for a in arrs)))


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    x, y = _pair(y_true, y_pred)
    return float(np.mean(x == y)) if len(x) else float("nan")


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of items with true label ``labels[i]`` predicted as ``labels[j]``."""
    x, y = _pair(y_true, y_pred)
    labs = list(labels) if labels is not None else unique_labels(x, y)
    cm = np.zeros((len(labs), len(labs)), dtype=np.int64)
    lab = np.asarray(labs)
    if _numeric(x) and _numeric(y) and _numeric(lab) and len(labs):  # vectorised: numbers (label codes)
        order = np.argsort(lab, kind="stable")
        srt = lab[order]
        xi = np.clip(np.searchsorted(srt, x), 0, len(srt) - 1)
        yi = np.clip(np.searchsorted(srt, y), 0, len(srt) - 1)
        ok = (srt[xi] == x) & (srt[yi] == y)
        np.add.at(cm, (order[xi[ok]], order[yi[ok]]), 1)
        return cm
    index = {v: i for i, v in enumerate(labs)}
    for t, p in zip(x.tolist(), y.tolist(), strict=True):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    return cm


def cohen_kappa(y1: Sequence[Any], y2: Sequence[Any], *, weights: str | None = None,
                labels: Sequence[Any] | None = None) -> float:
    """Cohen's kappa; ``weights`` None, ``"linear"`` or ``"quadratic"`` (distances between label indices)."""
    cm = confusion_matrix(y1, y2, labels).astype(np.float64)
    n = cm.shape[0]
    sum0, sum1 = cm.sum(axis=0), cm.sum(axis=1)
    if sum0.sum() == 0:
        return float("nan")
    expected = np.outer(sum0, sum1) / sum0.sum()
    if weights is None:
        w = np.ones((n, n))
        np.fill_diagonal(w, 0.0)
    elif weights in ("linear", "quadratic"):
        idx = np.arange(n, dtype=np.float64)
        d = idx[None, :] - idx[:, None]
        w = np.abs(d) if weights == "linear" else d**2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    den = float(np.sum(w * expected))
    return float("nan") if den == 0 else float(1.0 - np.sum(w * cm) / den)


def precision_recall(y_true: Sequence[Any], y_pred: Sequence[Any],
                     labels: Sequence[Any] | None = None) -> dict[Any, dict[str, float]]:
    """Per-class precision, recall and support (0 where undefined, like scikit-learn)."""
    labs = list(labels) if labels is not None else unique_labels(y_true, y_pred)
    cm = confusion_matrix(y_true, y_pred, labs)
    out: dict[Any, dict[str, float]] = {}
    for i, lab in enumerate(labs):
        tp, pred, true = cm[i, i], cm[:, i].sum(), cm[i, :].sum()
        out[lab] = {"precision": float(tp / pred) if pred else 0.0, "recall": float(tp / true) if true else 0.0,
                    "support": int(true)}
    return out


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties get their average rank."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    starts = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(a)])
    avg = first + (counts + 1) / 2.0
    ranks = np.empty(len(a))
    ranks[order] = avg[group]
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = (np.asarray(v, dtype=np.float64) for v in _pair(x, y))
    if len(a) < 2:
        return float("nan")
    am, bm = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(am), np.linalg.norm(bm)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.clip(np.dot(am / na, bm / nb), -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks."""
    a, b = _pair(x, y)
    return pearson(rankdata(a), rankdata(b))


def _tie_pairs(v: np.ndarray) -> float:
    _, counts = np.unique(v, return_counts=True)
    return float(np.sum(counts * (counts - 1) / 2.0))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (scipy's default): (P - Q) / sqrt((n0 - n1) (n0 - n2))."""
    a, b = (np.asarray(v, dtype=np.float64) for v in _pair(x, y))
    n = len(a)
    if n < 2:
        return float("nan")
    s = 0.0
    for lo in range(0, n, 512):  # sum of sign products over pairs, in blocks of rows
        da = np.sign(a[lo:lo + 512, None] - a[None, :])
        db = np.sign(b[lo:lo + 512, None] - b[None, :])
        s += float(np.sum(da * db))
    s /= 2.0  # each unordered pair was counted twice
    n0 = n * (n - 1) / 2.0
    den = np.sqrt(n0 - _tie_pairs(a)) * np.sqrt(n0 - _tie_pairs(b))
    return float("nan") if den == 0 else float(s / den)


def krippendorff_alpha(data: Sequence[Sequence[float]] | np.ndarray, *, level: Level = "nominal",
                       value_domain: Sequence[float] | None = None) -> float:
    """Krippendorff's alpha of a (coders x units) matrix with ``nan`` for missing values."""
    r = np.asarray(data, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"reliability data must be 2-d (coders x units), got shape {r.shape}")
    dom = np.unique(r[~np.isnan(r)]) if value_domain is None else np.asarray(value_domain, dtype=np.float64)
    if len(dom) <= 1:
        return float("nan")
    counts = (r.T[..., None] == dom[None, None, :]).sum(axis=1).astype(np.float64)  # units x values
    m = counts.sum(axis=1)
    use = m >= 2
    if not use.any():
        return float("nan")
    c = counts[use]
    o = np.einsum("uc,uk->ck", c / (m[use] - 1)[:, None], c) - np.diag((c / (m[use] - 1)[:, None]).sum(axis=0))
    n_v = o.sum(axis=0)
    n = n_v.sum()
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1)
    if level == "nominal":
        d = 1.0 - np.eye(len(dom))
    elif level == "interval":
        d = (dom[:, None] - dom[None, :]) ** 2
    elif level == "ordinal":
        cum = np.r_[0.0, np.cumsum(n_v)]
        i = np.arange(len(dom))
        lo, hi = np.minimum(i[:, None], i[None, :]), np.maximum(i[:, None], i[None, :])
        d = (cum[hi + 1] - cum[lo] - (n_v[lo] + n_v[hi]) / 2.0) ** 2
    else:
        raise ValueError(f"level must be nominal, ordinal or interval, got {level!r}")
    den = float(np.sum(e * d))
    return float("nan") if den == 0 else float(1.0 - np.sum(o * d) / den)


def pairwise_agreement(data: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Observed agreement of a (coders x units) matrix with ``nan`` for missing values: per unit
    with two values or more, the share of pairs of coders giving the same value; their mean."""
    r = np.asarray(data, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"reliability data must be 2-d (coders x units), got shape {r.shape}")
    dom = np.unique(r[~np.isnan(r)])
    counts = (r.T[..., None] == dom[None, None, :]).sum(axis=1).astype(np.float64)  # units x values
    m = counts.sum(axis=1)
    use = m >= 2
    if not use.any():
        return float("nan")
    same = (counts[use] * (counts[use] - 1)).sum(axis=1)
    return float(np.mean(same / (m[use] * (m[use] - 1))))


def bootstrap_ci(stat: Callable[..., float], *arrays: Sequence[Any] | np.ndarray, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95, axis: int = 0) -> tuple[float, float]:
    """Percentile interval of ``stat(*arrays)`` over ``n_boot`` resamples of the items (the same
    resampled indices for every array, along ``axis``); resamples where the statistic is
    undefined are skipped. Seeded, so the interval is reproducible."""
    arrs = [np.asarray(a) for a in arrays]
    k = arrs[0].shape[axis]
    if k == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, k, size=k)
        vals[b] = stat(*(np.take(a, idx, axis=axis) for a in arrs))
    vals = vals[~np.isnan(vals)]
    if not len(vals):
        return float("nan"), float("nan")
    q = (1.0 - level) / 2.0
    return float(np.quantile(vals, q)), float(np.quantile(vals, 1.0 - q))


def self_consistency(repeats: Sequence[Sequence[Any]]) -> float:
    """Mean share of agreeing pairs among each item's repeated judgements (items with >= 2)."""
    rates = []
    for row in repeats:
        vals = [v for v in row if v is not None and not (isinstance(v, float) and np.isnan(v))]
        k = len(vals)
        if k < 2:
            continue
        same = sum(1 for i in range(k) for j in range(i + 1, k) if vals[i] == vals[j])
        rates.append(same / (k * (k - 1) / 2))
    return float(np.mean(rates)) if rates else float("nan")


def position_swap_consistency(first_order: Sequence[int], swapped_order: Sequence[int]) -> float:
    """Share of pairs where the same response wins in both orders (choices are positions 0/1)."""
    a, b = _pair(first_order, swapped_order)
    return float(np.mean(a == 1 - b)) if len(a) else float("nan")
