"""A grader's agreement with labels, or annotators' with each other, computed from records in
memory (:func:`compare`); reading them from files, runs or a judge is
:func:`envfoundry.quality.agree`.

Labels: ``{"id", "label", "annotator"?, "rubric"?}``; several annotators may label the same item and
any may skip items. The label set and scale are declared or inferred, then enforced
(:mod:`.labelset`). Scores: ``{"id", "score", "passed"?, "label"?, "repeat"?, "rubric"?}`` per
judgement (several repeats per item measure self-consistency), plus probe records:
``{"kind": "adversarial", "id", "probe", "passed"}`` and ``{"kind": "pair", "pair", "better",
"order": "ab"|"ba", "choice": 0|1}`` (the position the judge preferred). Without scores, the report
is the annotators' agreement among themselves (:mod:`.raters`).

The reference label of an item is that of the annotator named ``gold`` or ``ground_truth`` when
present, else the given ``reference`` annotator, else the majority of the annotators. Every
metric comes with a seeded bootstrap 95% interval (:mod:`.agreement`). Input that cannot mean what
it says is a UsageError with counts and examples; input a user may want to go on with (unmatched
ids, spellings that differ in case, grader labels no annotator used) is a warning, an error with
``strict``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.errors import UsageError
from ..core.seeding import derive_seed
from . import agreement as m
from .agreement_report import AgreementReport, error_causes, metric
from .coding import LabelData, Warn, grader_labels, prepare_labels, reference_labels
from .labelset import fmt, infer_scale
from .raters import annotators_report, disagreements, rater_alphas, rater_pairs
from .values import number

#: the most bootstrap resamples ``compare`` takes (more only costs time)
MAX_BOOT = 100_000


def detect_scale(values: Iterable[Any]) -> str:
    """The scale inferred for these labels (:func:`.labelset.infer_scale`)."""
    return infer_scale(list(values))


def _alpha(level: str) -> Callable[..., float]:
    def f(*cols: Any) -> float:
        import numpy as np

        return m.krippendorff_alpha(np.vstack(cols), level=level)
    return f


def _loose(i: str) -> str:
    """An id compared loosely, for hints only: no case, spaces, leading zeros or ``.0``."""
    s = "".join(i.split()).casefold()
    n = number(s)
    return str(n) if isinstance(n, int) else s.lstrip("0") or s


def _unmatched_hint(labelled: Iterable[str], scored: Iterable[str]) -> str:
    loose = {_loose(i): i for i in labelled}
    pairs = [(loose[_loose(s)], s) for s in scored if _loose(s) in loose and loose[_loose(s)] != s]
    if not pairs:
        return ""
    a, b = pairs[0]
    return (f"; {len(pairs)} would match ignoring case, spaces, leading zeros or '.0' (e.g. label {a!r} and "
            f"score {b!r}): write the ids the same way in both files")


def _examples(ids: Iterable[str], n: int = 3) -> str:
    ids = list(ids)
    return ", ".join(repr(i) for i in ids[:n]) + (", ..." if len(ids) > n else "")


def compare(labels: list[dict[str, Any]], scores: list[dict[str, Any]] | None = None, *, scale: str | None = None,
            label_set: str | Sequence[Any] | None = None, threshold: float = 0.5, reference: str | None = None,
            n_boot: int = 1000, seed: int = 0, strict: bool = False, asked: Iterable[str] | None = None
            ) -> AgreementReport:
    """The agreement report of ``scores`` against ``labels``; without ``scores``, of the annotators
    among themselves. ``asked``: the ids the grader was asked to score (a judge over a subset);
    labelled items outside it are not reported as unscored. A UsageError when the input cannot be
    compared (no item scores, no matching id, labels off the scale); when every judgement failed,
    a report of no items whose ``info`` counts the failures and their commonest causes."""
    import numpy as np

    if not math.isfinite(threshold):
        raise UsageError(f"the threshold must be a finite number, got {threshold}")
    if not 1 <= n_boot <= MAX_BOOT:
        raise UsageError(f"the number of bootstrap resamples must be between 1 and {MAX_BOOT}, got {n_boot}")
    if not labels:
        raise UsageError("no labels to compare with")
    warn = Warn(strict)
    data = prepare_labels(labels, scale=scale, label_set=label_set, warn=warn)
    ls = data.labelset
    if scores is None:
        rep = annotators_report(data, n_boot=n_boot, seed=seed, reference=reference)
        rep.warnings[:0] = warn.messages
        return rep
    ref, ref_name = reference_labels(data, reference)
    glab, gscore, reps, grub, failed = grader_labels(scores, ls, threshold, warn)
    errors = len(failed)
    judged = sum(len(v) for v in reps.values()) + errors
    scored = list(glab)
    aliased = False
    if glab and not any(i in ref for i in glab):  # run-store ids are TASK:SAMPLE; labels may name the task
        alias = {i.rsplit(":", 1)[0]: i for i in glab if i.endswith(":0")}
        if any(a in ref for a in alias):
            glab = {k: glab[v] for k, v in alias.items()}
            gscore = {k: gscore[v] for k, v in alias.items()}
            aliased = len(alias) < len(scored)
    ids = [i for i in ref if i in glab]
    rep = AgreementReport(ls.scale, ref_name, len(ids), label_set=[fmt(v) for v in ls.values])
    rep.notes = list(data.notes)
    rep.info = {**data.info, "scored_items": len(glab), "matched": len(ids), "judgements": judged,
                "judge_errors": errors, "judge_error_causes": error_causes(r["error"] for r in failed),
                "threshold": threshold, "n_boot": n_boot, "seed": seed}
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
                         "from the same environment and set?" + _unmatched_hint(ref, scored))
    if aliased:
        rep.notes.append("the labels name tasks and the scores are a run's TASK:SAMPLE: sample 0 of each task is "
                         "compared")
    failed_ids = {str(r["id"]) for r in failed}
    asked_ids = None if asked is None else set(asked)
    want = [i for i in ref if asked_ids is None or i in asked_ids]
    unscored = [i for i in want if i not in glab and i not in failed_ids]
    unlabelled = [i for i in glab if i not in ref]
    if unscored:
        warn(f"only {len(ids)} of {len(want)} labelled item(s) have a score: {len(unscored)} have none (e.g. "
             f"{_examples(unscored)})" + _unmatched_hint(unscored, unlabelled))
    if unlabelled:
        warn(f"{len(unlabelled)} of {len(glab)} scored item(s) have no reference label (e.g. {_examples(unlabelled)})")
    y = np.array([ref[i] for i in ids])
    g = np.array([glab[i] for i in ids])
    s = np.array([gscore[i] for i in ids])
    nb = {"n_boot": n_boot, "seed": seed}
    mets = rep.metrics
    level = ls.level
    if ls.scale != "continuous":
        mets.append(metric("accuracy", m.accuracy, y, g, **nb))
        mets.append(metric("cohen_kappa", lambda a, b: m.cohen_kappa(a, b), y, g, **nb))
        if ls.scale == "ordinal":
            for w in ("linear", "quadratic"):
                mets.append(metric(f"cohen_kappa_{w}", lambda a, b, w=w: m.cohen_kappa(a, b, weights=w), y, g, **nb))
        codes = m.unique_labels(y, g)
        names = [ls.show(c) for c in codes]
        rep.confusion = {"labels": names, "matrix": m.confusion_matrix(y, g, codes).tolist(), "rows": ref_name,
                         "columns": "grader"}
        rep.per_class = {ls.show(k): v for k, v in m.precision_recall(y, g, codes).items()}
        mets.append(metric("krippendorff_alpha_nominal", _alpha("nominal"), y, g, **nb))
    if level != "nominal":
        mets.append(metric(f"krippendorff_alpha_{level}", _alpha(level), y, g, **nb))
    if ls.scale != "nominal":
        mets.append(metric("spearman", m.spearman, y, s, **nb, note="grader score vs label"))
        mets.append(metric("kendall_tau_b", m.kendall_tau, y, s, **nb, note="grader score vs label"))
    multi = [reps[i] for i in ids if i in reps and len(reps[i]) > 1]
    if multi:
        k = max(len(r) for r in multi)
        mat = np.full((len(multi), k), np.nan)
        for row, vals in enumerate(multi):
            mat[row, : len(vals)] = vals
        mets.append(metric("self_consistency", lambda a: m.self_consistency(a.tolist()), mat, **nb,
                            note=f"pairs of repeats agreeing ({k} judgements per item)"))
        mets.append(metric(f"self_alpha_{level}", lambda a: m.krippendorff_alpha(a.T, level=level), mat, **nb,
                            note="repeats as coders"))
    _probes(rep, scores, n_boot, seed)
    _rubric_items(rep, data, ref_name, ids, grub, n_boot, seed)
    grader = {i: glab[i] for i in ids}
    rep.raters = rater_pairs(data, grader, n_boot=n_boot, seed=seed)
    rep.metrics += rater_alphas(data, grader, n_boot=n_boot, seed=seed)
    rep.disagreements = disagreements(data, grader, ref)
    acc, kap = rep.metric("accuracy"), rep.metric("cohen_kappa")
    rep.warnings = list(warn.messages)
    if acc and kap and acc.value >= 0.8 and (math.isnan(kap.value) or kap.value < 0.4):
        lab, cnt = Counter(y.tolist()).most_common(1)[0]
        rep.warnings.append(f"accuracy {acc.value:.2f} but kappa {kap.value:.2f}: the label {ls.show(lab)!r} makes up "
                            f"{cnt / len(y):.0%} of the reference, so accuracy overstates agreement")
    if len(ids) < 30:
        rep.warnings.append(f"only {len(ids)} items: the intervals are wide")
    if errors:
        lost = len(failed_ids & set(ref) - set(glab))
        rep.warnings.append(f"{errors} of {judged} judgement(s) failed and were left out, never counted as a score"
                            + (f"; {lost} labelled item(s) have no score left" if lost else ""))
    probe_errors = sum(1 for r in scores if (r.get("kind") or "item") != "item" and r.get("error"))
    if probe_errors:
        rep.info["probe_errors"] = probe_errors
        rep.warnings.append(f"{probe_errors} probe judgement(s) (adversarial, pairs) failed and were left out")
    rep.label_set = [fmt(v) for v in ls.values]  # with the categories only the grader used
    rep.info["label_set"] = rep.label_set if ls.scale != "continuous" else None
    return rep


def _probes(rep: AgreementReport, scores: list[dict[str, Any]], n_boot: int, seed: int) -> None:
    import numpy as np

    adv = [r for r in scores if r.get("kind") == "adversarial" and not r.get("error")]
    for probe in sorted({r["probe"] for r in adv}):
        vals = np.array([float(bool(r["passed"])) for r in adv if r["probe"] == probe])
        rep.metrics.append(metric(f"false_positive_rate ({probe})", lambda a: float(np.mean(a)), vals,
                                   n_boot=n_boot, seed=seed, note="known-bad transcript + probe judged a pass"))
    pairs: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in scores:
        if r.get("kind") == "pair" and not r.get("error"):
            pairs[r["pair"]][r["order"]] = r
    full = [p for p in pairs.values() if "ab" in p and "ba" in p]
    if full:
        ab = np.array([p["ab"]["choice"] for p in full])
        ba = np.array([p["ba"]["choice"] for p in full])
        rep.metrics.append(metric("position_swap_consistency", m.position_swap_consistency, ab, ba,
                                   n_boot=n_boot, seed=seed, note="same winner in both orders"))
        # the better (higher-labelled) transcript is shown first in "ab" and second in "ba"
        right = np.concatenate([ab == 0, ba == 1]).astype(float)
        rep.metrics.append(metric("pairwise_accuracy", lambda a: float(np.mean(a)), right, n_boot=n_boot,
                                   seed=seed, note="picked the better-labelled transcript"))
        first = np.concatenate([ab == 0, ba == 0]).astype(float)
        rep.metrics.append(metric("first_position_rate", lambda a: float(np.mean(a)), first, n_boot=n_boot,
                                   seed=seed, note="0.5 = no position bias"))


def _rubric_items(rep: AgreementReport, data: LabelData, ref_name: str, ids: list[str],
                  grub: dict[str, dict[str, bool]], n_boot: int, seed: int) -> None:
    truth: dict[str, dict[str, bool]] = {}
    for (ann, i), rub in data.rubric.items():
        if ann == ref_name or ref_name == "majority":
            truth.setdefault(i, rub)
    items = sorted({k for i in ids for k in truth.get(i, {}) if k in grub.get(i, {})})
    for k in items:
        both = [i for i in ids if k in truth.get(i, {}) and k in grub.get(i, {})]
        a = [int(truth[i][k]) for i in both]
        b = [int(grub[i][k]) for i in both]
        acc = metric("accuracy", m.accuracy, a, b, n_boot=n_boot, seed=derive_seed(seed, k))
        kap = metric("kappa", lambda x, y: m.cohen_kappa(x, y), a, b, n_boot=n_boot, seed=derive_seed(seed, k))
        rep.per_rubric.append({"item": k, "n": len(both), "accuracy": acc.value, "accuracy_ci": [acc.lo, acc.hi],
                               "kappa": kap.value, "kappa_ci": [kap.lo, kap.hi], "label_yes_rate": sum(a) / len(a),
                               "judge_yes_rate": sum(b) / len(b)})
