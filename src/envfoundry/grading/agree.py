"""``envfoundry agree``: how far a grader (an LLM judge, an environment's grader) agrees with labels.

Inputs are JSON lines. Labels: ``{"id", "label", "annotator"}`` (binary, ordinal or continuous
labels; optional ``"rubric": {item: bool}``); several annotators may label the same item and any
may skip items. Scores: ``{"id", "score", "passed"?, "label"?, "repeat"?, "rubric"?}`` per
judgement (several repeats per item measure self-consistency), plus probe records:
``{"kind": "adversarial", "id", "probe", "passed"}`` and ``{"kind": "pair", "pair", "better",
"order": "ab"|"ba", "choice": 0|1}`` (the position the judge preferred). They come from a file, a
run directory, or from running a rubric judge over stored transcripts (:func:`run_judge`).

The reference label of an item is that of the annotator named ``gold`` or ``ground_truth`` when
present, else the given ``reference`` annotator, else the majority of the annotators. Every
metric comes with a seeded bootstrap 95% interval (:mod:`.agreement`). Running a judge over
transcripts, with the adversarial and pairwise probes, lives in :mod:`.judge_runs`; reading the
label and score files in :mod:`.labels`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

from ..core.errors import UsageError
from ..core.seeding import derive_seed
from . import agreement as m
from .judge_runs import PROBES, resolve_judge, run_judge
from .labels import (
    SCALES,
    check_save,
    load_items,
    load_jsonl,
    load_labels,
    load_scores,
    scores_from_run,
    shipped_labels,
    write_jsonl,
)

REFERENCE_NAMES = ("gold", "ground_truth")
#: the most bootstrap resamples ``compare`` takes (more only costs time)
MAX_BOOT = 100_000
__all__ = ["MAX_BOOT", "PROBES", "SCALES", "AgreementReport", "Metric", "check_save", "compare", "detect_scale",
           "error_causes", "load_items", "load_jsonl", "load_labels", "load_scores", "reference_labels",
           "resolve_judge", "run_judge", "scores_from_run", "shipped_labels", "write_jsonl"]


@dataclass
class Metric:
    name: str
    value: float
    lo: float
    hi: float
    n: int
    note: str = ""


@dataclass
class AgreementReport:
    scale: str
    reference: str
    n_items: int
    metrics: list[Metric] = field(default_factory=list)
    confusion: dict[str, Any] | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_rubric: list[dict[str, Any]] = field(default_factory=list)
    raters: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> Metric | None:
        return next((x for x in self.metrics if x.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def _json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON data: NaN and infinities become None, other unknown types strings."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # a numpy scalar
        return _json_safe(obj.item())
    return str(obj)


def detect_scale(values: Iterable[Any]) -> str:
    vals = [v for v in values if v is not None]
    if all(isinstance(v, bool) or v in (0, 1) for v in vals):
        return "binary"
    if all(isinstance(v, (int, float)) and float(v).is_integer() for v in vals) and len(set(vals)) <= 10:
        return "ordinal"
    if all(isinstance(v, (int, float)) for v in vals):
        return "continuous"
    return "nominal"


def _norm(v: Any, scale: str) -> Any:
    if v is None:
        return None
    if scale == "binary":
        return int(bool(v))
    if scale in ("ordinal", "continuous"):
        return float(v)
    return str(v)


def reference_labels(labels: list[dict[str, Any]], scale: str,
                     reference: str | None = None) -> tuple[dict[str, Any], str]:
    by_ann: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in labels:
        by_ann[r["annotator"]][r["id"]] = _norm(r["label"], scale)
    name = reference or next((n for n in REFERENCE_NAMES if n in by_ann), None)
    if name is not None:
        if name not in by_ann:
            raise UsageError(f"no annotator {name!r} in the labels (annotators: {', '.join(by_ann)})")
        return dict(by_ann[name]), name
    if len(by_ann) == 1:
        (name, ref), = by_ann.items()
        return dict(ref), name
    order = list(by_ann)
    ref: dict[str, Any] = {}
    for i in dict.fromkeys(r["id"] for r in labels):
        vals = [by_ann[a][i] for a in order if i in by_ann[a]]
        if scale == "continuous":
            ref[i] = sum(vals) / len(vals)
        else:
            top = Counter(vals).most_common()
            ref[i] = next(v for v in vals if Counter(vals)[v] == top[0][1])  # ties: the first annotator's
    return ref, "majority"


def _grader_labels(scores: list[dict[str, Any]], scale: str, threshold: float) -> tuple[
        dict[str, Any], dict[str, float], dict[str, list[Any]], dict[str, dict[str, bool]], list[dict[str, Any]]]:
    """Per item: the grader's label (majority of repeats), mean score, all repeats, rubric answers;
    and the failed judgements."""
    reps: dict[str, list[Any]] = defaultdict(list)
    raw: dict[str, list[float]] = defaultdict(list)
    rub: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    errors = []
    for r in scores:
        if r.get("kind", "item") != "item":
            continue
        if r.get("error"):
            errors.append(r)
            continue
        score = r.get("score")
        if r.get("label") is not None:
            lab = _norm(r["label"], scale)
        elif scale == "binary":
            lab = int(bool(r["passed"])) if "passed" in r else int(float(score) >= threshold)
        elif scale == "continuous":
            lab = float(score)
        else:
            lab = _norm(round(float(score)), scale) if scale == "ordinal" else str(score)
        i = str(r["id"])
        reps[i].append(lab)
        raw[i].append(float(score) if score is not None else float(lab))
        for k, v in (r.get("rubric") or {}).items():
            rub[i][k].append(bool(v))
    label, mean = {}, {}
    for i, vals in reps.items():
        if scale == "continuous":
            label[i] = sum(vals) / len(vals)
        else:
            top = Counter(vals).most_common(1)[0][1]
            label[i] = next(v for v in vals if Counter(vals)[v] == top)
        mean[i] = sum(raw[i]) / len(raw[i])
    rubric = {i: {k: sum(v) * 2 > len(v) for k, v in d.items()} for i, d in rub.items()}
    return label, mean, dict(reps), rubric, errors


def error_causes(errors: Iterable[Any], top: int = 3) -> list[dict[str, Any]]:
    """The commonest reasons among failed judgements' messages, ``{"count", "cause", "example"}``:
    messages that differ only in the judge's last reply count as one cause."""
    groups: Counter[str] = Counter()
    example: dict[str, str] = {}
    for e in errors:
        text = " ".join(str(e).split())
        cause, _, rest = text.partition("; last reply:")
        groups[cause] += 1
        example.setdefault(cause, rest.strip()[:100])
    return [{"count": n, "cause": c, "example": example[c]} for c, n in groups.most_common(top)]


def _metric(name: str, fn: Callable[..., float], *arrays: Sequence[Any], n_boot: int, seed: int, note: str = "",
            axis: int = 0) -> Metric:
    import numpy as np

    arrs = [np.asarray(a) for a in arrays]
    value = fn(*arrs)
    lo, hi = m.bootstrap_ci(fn, *arrs, n_boot=n_boot, seed=derive_seed(seed, name), axis=axis)
    return Metric(name, value, lo, hi, int(arrs[0].shape[axis]), note)


def _alpha(level: str) -> Callable[..., float]:
    def f(*cols: Any) -> float:
        import numpy as np

        return m.krippendorff_alpha(np.vstack(cols), level=level)
    return f


def compare(labels: list[dict[str, Any]], scores: list[dict[str, Any]], *, scale: str | None = None,
            threshold: float = 0.5, reference: str | None = None, n_boot: int = 1000, seed: int = 0) -> AgreementReport:
    """The full agreement report of ``scores`` against ``labels``. A UsageError when the scores hold
    no item score, or none of their ids is labelled; when every judgement failed, a report of no
    items whose ``info`` counts the failures and their commonest causes."""
    import numpy as np

    if scale is not None and scale not in SCALES:
        raise UsageError(f"unknown scale {scale!r} (choose from: {', '.join(SCALES)})")
    if not math.isfinite(threshold):
        raise UsageError(f"the threshold must be a finite number, got {threshold}")
    if not 1 <= n_boot <= MAX_BOOT:
        raise UsageError(f"the number of bootstrap resamples must be between 1 and {MAX_BOOT}, got {n_boot}")

    if not labels:
        raise UsageError("no labels to compare with")
    scale = scale or detect_scale(r["label"] for r in labels)
    ref, ref_name = reference_labels(labels, scale, reference)
    glab, gscore, reps, grub, failed = _grader_labels(scores, scale, threshold)
    errors = len(failed)
    judged = sum(len(v) for v in reps.values()) + errors
    scored = list(glab)
    if glab and not any(i in ref for i in glab):  # run-store ids are TASK:SAMPLE; labels may name the task
        alias = {i.rsplit(":", 1)[0]: i for i in glab if i.endswith(":0")}
        glab = {k: glab[v] for k, v in alias.items()}
        gscore = {k: gscore[v] for k, v in alias.items()}
    ids = [i for i in ref if i in glab]
    rep = AgreementReport(scale, ref_name, len(ids))
    rep.info = {"labelled_items": len(ref), "scored_items": len(glab), "matched": len(ids), "judgements": judged,
                "judge_errors": errors, "judge_error_causes": error_causes(r["error"] for r in failed),
                "annotators": sorted({r["annotator"] for r in labels}), "threshold": threshold, "n_boot": n_boot,
                "seed": seed}
    if not scored:
        if not errors:
            raise UsageError("the scores hold no item scores (records with an 'id' and a 'score', 'passed' or "
                             "'label')")
        rep.warnings.append(f"{errors} of {judged} judgement(s) failed: no item could be scored "
                            "(a failed judgement is never counted as a score)")
        return rep
    if not ids:
        raise UsageError(f"no id matches between the labels and the scores: the labels have {len(ref)} item id(s) "
                         f"(e.g. {next(iter(ref))!r}), the scores {len(scored)} (e.g. {scored[0]!r}); are they "
                         "from the same environment and set?")
    y = np.array([ref[i] for i in ids])
    g = np.array([glab[i] for i in ids])
    s = np.array([gscore[i] for i in ids])
    nb = {"n_boot": n_boot, "seed": seed}
    mets = rep.metrics
    if scale != "continuous":
        mets.append(_metric("accuracy", m.accuracy, y, g, **nb))
        mets.append(_metric("cohen_kappa", lambda a, b: m.cohen_kappa(a, b), y, g, **nb))
        if scale == "ordinal":
            for w in ("linear", "quadratic"):
                mets.append(_metric(f"cohen_kappa_{w}", lambda a, b, w=w: m.cohen_kappa(a, b, weights=w), y, g, **nb))
        labs = m.unique_labels(y, g)
        rep.confusion = {"labels": labs, "matrix": m.confusion_matrix(y, g, labs).tolist()}
        rep.per_class = {str(k): v for k, v in m.precision_recall(y, g, labs).items()}
    level = {"binary": "nominal", "nominal": "nominal", "ordinal": "ordinal", "continuous": "interval"}[scale]
    if scale != "nominal":
        yf = y.astype(float)
        mets.append(_metric(f"krippendorff_alpha_{level}", _alpha(level), yf, g.astype(float), **nb))
        mets.append(_metric("spearman", m.spearman, yf, s, **nb, note="grader score vs label"))
        mets.append(_metric("kendall_tau_b", m.kendall_tau, yf, s, **nb, note="grader score vs label"))
    multi = [reps[i] for i in ids if len(reps[i]) > 1]
    if multi:
        k = max(len(r) for r in multi)
        mat = np.full((len(multi), k), np.nan)
        for row, vals in enumerate(multi):
            mat[row, : len(vals)] = [float(v) for v in vals]
        mets.append(_metric("self_consistency", lambda a: m.self_consistency(a.tolist()), mat, **nb,
                            note=f"pairs of repeats agreeing ({k} judgements per item)"))
        mets.append(_metric(f"self_alpha_{level}", lambda a: m.krippendorff_alpha(a.T, level=level), mat, **nb,
                            note="repeats as coders"))
    _probes(rep, scores, n_boot, seed)
    _rubric_items(rep, labels, ref_name, ids, grub, n_boot, seed)
    _raters(rep, labels, scale, ids, glab, n_boot, seed)
    acc, kap = rep.metric("accuracy"), rep.metric("cohen_kappa")
    if acc and kap and acc.value >= 0.8 and (math.isnan(kap.value) or kap.value < 0.4):
        lab, cnt = Counter(y.tolist()).most_common(1)[0]
        rep.warnings.append(f"accuracy {acc.value:.2f} but kappa {kap.value:.2f}: the label {lab!r} makes up "
                            f"{cnt / len(y):.0%} of the reference, so accuracy overstates agreement")
    if len(ids) < 30:
        rep.warnings.append(f"only {len(ids)} items: the intervals are wide")
    if errors:
        lost = len({str(r["id"]) for r in failed} & set(ref) - set(glab))
        rep.warnings.append(f"{errors} of {judged} judgement(s) failed and were left out, never counted as a score"
                            + (f"; {lost} labelled item(s) have no score left" if lost else ""))
    probe_errors = sum(1 for r in scores if r.get("kind", "item") != "item" and r.get("error"))
    if probe_errors:
        rep.info["probe_errors"] = probe_errors
        rep.warnings.append(f"{probe_errors} probe judgement(s) (adversarial, pairs) failed and were left out")
    return rep


def _probes(rep: AgreementReport, scores: list[dict[str, Any]], n_boot: int, seed: int) -> None:
    import numpy as np

    adv = [r for r in scores if r.get("kind") == "adversarial" and not r.get("error")]
    for probe in sorted({r["probe"] for r in adv}):
        vals = np.array([float(bool(r["passed"])) for r in adv if r["probe"] == probe])
        rep.metrics.append(_metric(f"false_positive_rate ({probe})", lambda a: float(np.mean(a)), vals,
                                   n_boot=n_boot, seed=seed, note="known-bad transcript + probe judged a pass"))
    pairs: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in scores:
        if r.get("kind") == "pair" and not r.get("error"):
            pairs[r["pair"]][r["order"]] = r
    full = [p for p in pairs.values() if "ab" in p and "ba" in p]
    if full:
        ab = np.array([p["ab"]["choice"] for p in full])
        ba = np.array([p["ba"]["choice"] for p in full])
        rep.metrics.append(_metric("position_swap_consistency", m.position_swap_consistency, ab, ba,
                                   n_boot=n_boot, seed=seed, note="same winner in both orders"))
        # the better (higher-labelled) transcript is shown first in "ab" and second in "ba"
        right = np.concatenate([ab == 0, ba == 1]).astype(float)
        rep.metrics.append(_metric("pairwise_accuracy", lambda a: float(np.mean(a)), right, n_boot=n_boot,
                                   seed=seed, note="picked the better-labelled transcript"))
        first = np.concatenate([ab == 0, ba == 0]).astype(float)
        rep.metrics.append(_metric("first_position_rate", lambda a: float(np.mean(a)), first, n_boot=n_boot,
                                   seed=seed, note="0.5 = no position bias"))


def _rubric_items(rep: AgreementReport, labels: list[dict[str, Any]], ref_name: str, ids: list[str],
                  grub: dict[str, dict[str, bool]], n_boot: int, seed: int) -> None:
    truth: dict[str, dict[str, bool]] = {}
    for r in labels:
        if r.get("rubric") and (r["annotator"] == ref_name or ref_name == "majority"):
            truth.setdefault(r["id"], {k: bool(v) for k, v in r["rubric"].items()})
    items = sorted({k for i in ids for k in truth.get(i, {}) if k in grub.get(i, {})})
    for k in items:
        both = [i for i in ids if k in truth.get(i, {}) and k in grub.get(i, {})]
        a = [int(truth[i][k]) for i in both]
        b = [int(grub[i][k]) for i in both]
        acc = _metric("accuracy", m.accuracy, a, b, n_boot=n_boot, seed=derive_seed(seed, k))
        kap = _metric("kappa", lambda x, y: m.cohen_kappa(x, y), a, b, n_boot=n_boot, seed=derive_seed(seed, k))
        rep.per_rubric.append({"item": k, "n": len(both), "accuracy": acc.value, "accuracy_ci": [acc.lo, acc.hi],
                               "kappa": kap.value, "kappa_ci": [kap.lo, kap.hi], "label_yes_rate": sum(a) / len(a),
                               "judge_yes_rate": sum(b) / len(b)})


def _raters(rep: AgreementReport, labels: list[dict[str, Any]], scale: str, ids: list[str],
            glab: dict[str, Any], n_boot: int, seed: int) -> None:
    """Pairwise agreement among the annotators and the grader, and alpha with and without the grader."""
    import numpy as np

    by: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in labels:
        by[r["annotator"]][r["id"]] = _norm(r["label"], scale)
    anns = sorted(by)
    if len(anns) < 2 and not glab:
        return
    raters = {**{a: by[a] for a in anns}, "grader": {i: glab[i] for i in ids}}
    for a, b in combinations(raters, 2):
        common = [i for i in raters[a] if i in raters[b]]
        if len(common) < 2:
            continue
        x, y = [raters[a][i] for i in common], [raters[b][i] for i in common]
        if scale == "continuous":
            met = _metric("spearman", m.spearman, x, y, n_boot=n_boot, seed=derive_seed(seed, a, b))
        else:
            w = "linear" if scale == "ordinal" else None
            met = _metric("kappa", lambda p, q, w=w: m.cohen_kappa(p, q, weights=w), x, y, n_boot=n_boot,
                          seed=derive_seed(seed, a, b))
        rep.raters.append({"a": a, "b": b, "n": len(common), "statistic": met.name + ("_linear" if scale == "ordinal"
                                                                                       else ""),
                           "value": met.value, "ci": [met.lo, met.hi]})
    if len(anns) >= 2 and scale != "nominal":
        level = {"binary": "nominal", "ordinal": "ordinal", "continuous": "interval"}[scale]
        units = sorted({i for a in anns for i in by[a]})
        for name, who in (("annotators", anns), ("annotators+grader", [*anns, "grader"])):
            mat = np.array([[float(raters[r].get(i, np.nan)) if raters[r].get(i) is not None else np.nan
                             for i in units] for r in who])
            met = _metric(f"krippendorff_alpha_{level} ({name})", lambda a: m.krippendorff_alpha(a, level=level),
                          mat, n_boot=n_boot, seed=derive_seed(seed, name), axis=1)
            rep.metrics.append(met)
