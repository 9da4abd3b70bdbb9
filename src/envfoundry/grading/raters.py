"""Agreement among raters for ``envfoundry agree``: the annotators with each other (and with a
grader) pairwise, Krippendorff's alpha over all of them, and the items where they disagree (what
an expert should look at next). Without a grader this is the whole report
(:func:`annotators_report`)."""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import TYPE_CHECKING, Any

from ..core.errors import UsageError
from ..core.seeding import derive_seed
from . import agreement as m
from .agreement_report import AgreementReport, Metric, metric

if TYPE_CHECKING:
    import numpy as np

    from .coding import LabelData


def _raters(data: LabelData, grader: dict[str, float] | None) -> dict[str, dict[str, float]]:
    """The annotators' labels and, under a name no annotator has, the grader's."""
    out = dict(data.by)
    if grader is not None:
        out[grader_name(data)] = grader
    return out


def grader_name(data: LabelData) -> str:
    return "grader" if "grader" not in data.by else "grader (scores)"


def _matrix(raters: dict[str, dict[str, float]], who: list[str], units: list[str]) -> np.ndarray:
    import numpy as np

    return np.array([[raters[r].get(i, np.nan) for i in units] for r in who], dtype=float)


def rater_pairs(data: LabelData, grader: dict[str, float] | None = None, *, n_boot: int, seed: int
                ) -> list[dict[str, Any]]:
    """Each pair of raters on the items both labelled: Cohen's kappa (linear weights for ordinal
    labels), Spearman's rho for continuous ones."""
    raters = _raters(data, grader)
    scale = data.labelset.scale
    out = []
    for a, b in combinations(raters, 2):
        common = [i for i in raters[a] if i in raters[b]]
        if len(common) < 2:
            continue
        x, y = [raters[a][i] for i in common], [raters[b][i] for i in common]
        if scale == "continuous":
            met = metric("spearman", m.spearman, x, y, n_boot=n_boot, seed=derive_seed(seed, a, b))
        else:
            w = "linear" if scale == "ordinal" else None
            met = metric("kappa", lambda p, q, w=w: m.cohen_kappa(p, q, weights=w), x, y, n_boot=n_boot,
                          seed=derive_seed(seed, a, b))
        out.append({"a": a, "b": b, "n": len(common), "statistic": met.name + ("_linear" if scale == "ordinal" else ""),
                    "value": met.value, "ci": [met.lo, met.hi]})
    return out


def rater_alphas(data: LabelData, grader: dict[str, float] | None = None, *, n_boot: int, seed: int
                 ) -> list[Metric]:
    """Krippendorff's alpha among the annotators (and with the grader): nominal on every scale
    but continuous, and at the scale's own level (ordinal, interval) besides."""
    anns = list(data.by)
    if len(anns) < 2:
        return []
    raters = _raters(data, grader)
    ls = data.labelset
    levels = [lv for lv in ("nominal", ls.level) if lv != "nominal" or ls.scale != "continuous"]
    groups = [("annotators", anns)] + ([("annotators+grader", list(raters))] if grader is not None else [])
    out = []
    for name, who in groups:
        units = [i for i in data.ids if sum(i in raters[r] for r in who) >= 2]
        if not units:
            continue
        mat = _matrix(raters, who, units)
        for level in dict.fromkeys(levels):
            out.append(metric(f"krippendorff_alpha_{level} ({name})",
                               lambda a, level=level: m.krippendorff_alpha(a, level=level), mat, n_boot=n_boot,
                               seed=derive_seed(seed, name, level), axis=1))
    return out


def _mode(vals: list[float]) -> float | None:
    """The one commonest value, None on a tie."""
    top = Counter(vals).most_common(2)
    return None if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]


def disagreements(data: LabelData, grader: dict[str, float] | None = None,
                  reference: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The items whose raters (the annotators, and the grader) do not all give the same label, the
    most contested first: ``{"id", "labels": {rater: label}, "spread", "majority"?, "reference"?,
    "grader"?, "grader_agrees"?}``. ``spread`` is the share of raters outside the commonest label
    (binary, nominal) or the range of the labels (ordinal, continuous)."""
    raters = _raters(data, grader)
    ls = data.labelset
    gname = grader_name(data)
    rows = []
    for n, i in enumerate(data.ids):
        labs = {r: v[i] for r, v in raters.items() if i in v}
        vals = list(labs.values())
        if len(vals) < 2 or len(set(vals)) == 1:
            continue
        if ls.scale in ("ordinal", "continuous"):
            spread = float(max(vals) - min(vals))
        else:
            spread = 1.0 - Counter(vals).most_common(1)[0][1] / len(vals)
        rec: dict[str, Any] = {"id": i, "labels": {r: ls.show(v) for r, v in labs.items()}, "spread": round(spread, 6)}
        if ls.scale != "continuous":
            top = _mode(vals)
            rec["majority"] = None if top is None else ls.show(top)
        if grader is not None and reference is not None and gname in labs:
            rec["reference"] = ls.show(reference[i])
            rec["grader"] = ls.show(grader[i])
            if ls.scale != "continuous":
                rec["grader_agrees"] = grader[i] == reference[i]
        rows.append((-spread, n, rec))
    return [r for _, _, r in sorted(rows, key=lambda t: (t[0], t[1]))]


def annotators_report(data: LabelData, *, n_boot: int, seed: int, reference: str | None = None) -> AgreementReport:
    """The annotators' agreement among themselves (no grader): the share of agreeing pairs per
    item, Krippendorff's alpha, Cohen's kappa for two annotators (and each pair), the disagreements."""
    import numpy as np

    anns = list(data.by)
    if len(anns) < 2:
        raise UsageError(f"agreement among annotators needs two or more annotators, but every label is "
                         f"{anns[0]!r}'s (name the annotator column with --annotator-field); to compare a grader "
                         "with these labels give --scores, --run or --judge")
    if reference is not None:
        raise UsageError("--reference applies when a grader is compared with the labels; among annotators every "
                         "pair is compared")
    ls = data.labelset
    units = [i for i in data.ids if sum(i in data.by[a] for a in anns) >= 2]
    if not units:
        raise UsageError(f"no item has labels from two annotators ({len(data.ids)} item(s), each labelled by one); "
                         "are the ids written the same way for every annotator?")
    rep = AgreementReport(ls.scale, "none", len(units), mode="annotators",
                          label_set=[str(v) for v in data.info["label_set"] or []])
    rep.notes = list(data.notes)
    rep.info = {**data.info, "items_with_two_labels_or_more": len(units),
                "single_label_items": len(data.ids) - len(units), "n_boot": n_boot, "seed": seed}
    nb = {"n_boot": n_boot, "seed": seed}
    mat = _matrix(data.by, anns, units)
    if ls.scale != "continuous":
        rep.metrics.append(metric("pairwise_agreement", m.pairwise_agreement, mat, **nb, axis=1,
                                   note="share of annotator pairs giving the same label, per item"))
    if len(anns) == 2:
        a, b = anns
        both = [i for i in units if i in data.by[a] and i in data.by[b]]
        x, y = np.array([data.by[a][i] for i in both]), np.array([data.by[b][i] for i in both])
        if ls.scale == "continuous":
            rep.metrics.append(metric("spearman", m.spearman, x, y, **nb, note=f"{a} vs {b}"))
        else:
            rep.metrics.append(metric("cohen_kappa", lambda p, q: m.cohen_kappa(p, q), x, y, **nb, note=f"{a} vs {b}"))
            if ls.scale == "ordinal":
                for w in ("linear", "quadratic"):
                    rep.metrics.append(metric(f"cohen_kappa_{w}", lambda p, q, w=w: m.cohen_kappa(p, q, weights=w),
                                               x, y, **nb, note=f"{a} vs {b}"))
            codes = m.unique_labels(x, y)
            rep.confusion = {"labels": [ls.show(c) for c in codes], "matrix": m.confusion_matrix(x, y, codes).tolist(),
                             "rows": a, "columns": b}
    rep.metrics += rater_alphas(data, None, **nb)
    if len(anns) > 2:
        rep.raters = rater_pairs(data, None, **nb)
    rep.disagreements = disagreements(data)
    if len(units) < 30:
        rep.warnings.append(f"only {len(units)} items with two labels or more: the intervals are wide")
    if rep.info["single_label_items"]:
        rep.notes.append(f"{rep.info['single_label_items']} item(s) labelled by one annotator only: not compared")
    return rep
