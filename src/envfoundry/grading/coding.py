"""Labels and grader verdicts as codes on one scale, for ``envfoundry agree``: the label set
and scale (:mod:`.labelset`) applied to every label, one label per item and annotator, the
reference label of each item, and each grader verdict (a label, a pass/fail, a score and the
threshold) read on the labels' scale. What cannot be read is a UsageError with counts and
examples; what a user may want to go on with is a warning (:class:`Warn`, an error with
``strict``)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError
from .labelset import LabelSet, build_label_set, fmt, parse_label_set
from .values import Problems, id_value, number, parse_label

REFERENCE_NAMES = ("gold", "ground_truth")


class Warn:
    """Collects warnings about the input; with ``strict`` the first one is a UsageError."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        if self.strict:
            raise UsageError(f"{message} (an error with --strict)")
        self.messages.append(message)


@dataclass
class LabelData:
    """Labels checked and coded: ``by[annotator][item id]`` is a code of ``labelset``."""

    labelset: LabelSet
    by: dict[str, dict[str, float]]
    ids: list[str]
    rubric: dict[tuple[str, str], dict[str, bool]]
    info: dict[str, Any]
    notes: list[str]


def prepare_labels(labels: list[dict[str, Any]], *, scale: str | None = None,
                   label_set: str | Sequence[Any] | None = None, warn: Callable[[str], None] | None = None
                   ) -> LabelData:
    """Check and code label records (``{"id", "label", "annotator"?, "where"?, "rubric"?}``): the
    label set and scale (declared or inferred), and one label per item and annotator (a repeat with
    the same label counts once; with another label it is an error)."""
    warn = warn or Warn()
    bad = Problems()
    recs = []
    for k, r in enumerate(labels, 1):
        where = r.get("where") or f"label record {k}"
        rid = id_value(r.get("id"))
        if rid is None:
            bad.add("label record(s) with no 'id' (text or a whole number)", where, r.get("id"))
            continue
        try:
            v = parse_label(r.get("label"))
        except ValueError as e:
            bad.add(f"label(s) {e}", where, r.get("label"))
            continue
        ann = id_value(r.get("annotator", "annotator"))
        if ann is None:
            bad.add("label record(s) whose 'annotator' is not a name", where, r.get("annotator"))
            continue
        recs.append((where, rid, ann, v, r.get("rubric")))
    bad.raise_if_any()
    observed = [(w, v) for w, _, _, v, _ in recs if v is not None]
    if not observed:
        raise UsageError("no labels to compare with (every label is missing)")
    declared = None if label_set is None else parse_label_set(label_set)
    ls = build_label_set(observed, scale=scale, declared=declared)
    for w in ls.warnings:
        warn(w)
    by: dict[str, dict[str, float]] = {}
    first: dict[tuple[str, str], str] = {}
    rubric: dict[tuple[str, str], dict[str, bool]] = {}
    conflict = Problems()
    missing = repeated = 0
    for where, rid, ann, v, rub in recs:
        if v is None:
            missing += 1
            continue
        c = ls.code(v)
        assert c is not None  # the set was built from (or checked against) these labels
        prev = by.setdefault(ann, {}).get(rid)
        if prev is not None:
            if prev == c:
                repeated += 1
            else:
                conflict.add("item(s) labelled twice by one annotator with different labels",
                             f"{first[(ann, rid)]} and {where}", text=f"{rid!r} by {ann!r}: {ls.show(prev)} vs "
                                                                      f"{ls.show(c)}")
            continue
        by[ann][rid] = c
        first[(ann, rid)] = where
        if rub:
            rubric[(ann, rid)] = {str(key): bool(val) for key, val in rub.items()}
    conflict.raise_if_any("keep one label per item and annotator, or tell the annotators apart")
    notes = list(ls.notes)
    if missing:
        notes.append(f"{missing} missing label(s) (empty or null) left out")
    if repeated:
        notes.append(f"{repeated} repeated label(s) (same item, annotator and label) counted once")
    ids = list(dict.fromkeys(rid for _, rid, _, v, _ in recs if v is not None))
    info = {"labelled_items": len(ids), "annotators": sorted(by), "label_set": [fmt(v) for v in ls.values]
            if ls.scale != "continuous" else None, "label_map": ls.label_map(), "declared_label_set": ls.declared,
            "missing_labels": missing, "repeated_labels": repeated}
    return LabelData(ls, by, ids, rubric, info, notes)


def reference_labels(data: LabelData, reference: str | None = None) -> tuple[dict[str, float], str]:
    """Per item, the reference label's code, and whose it is: the annotator named ``reference``,
    else ``gold`` or ``ground_truth``, else the majority (ties: the first annotator's; continuous
    labels: the mean)."""
    by = data.by
    name = reference or next((n for n in REFERENCE_NAMES if n in by), None)
    if name is not None:
        if name not in by:
            raise UsageError(f"no annotator {name!r} in the labels (annotators: {', '.join(by)})")
        return dict(by[name]), name
    if len(by) == 1:
        (name, ref), = by.items()
        return dict(ref), name
    out: dict[str, float] = {}
    for i in data.ids:
        vals = [by[a][i] for a in by if i in by[a]]
        out[i] = sum(vals) / len(vals) if data.labelset.scale == "continuous" else _mode(vals)
    return out, "majority"


def _mode(vals: list[Any]) -> Any:
    """The commonest value; ties: the first given."""
    counts = Counter(vals)
    top = max(counts.values())
    return next(v for v in vals if counts[v] == top)


def _nearest(ls: LabelSet, x: float) -> float:
    """A score placed on a numeric ordinal scale: rounded half up for whole-number labels, else
    the nearest label."""
    if all(float(v).is_integer() for v in ls.values):
        return float(math.floor(x + 0.5))
    return float(min(ls.values, key=lambda v: (abs(v - x), v)))


def grader_labels(scores: list[dict[str, Any]], ls: LabelSet, threshold: float, warn: Callable[[str], None]
                   ) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]], dict[str, dict[str, bool]],
                              list[dict[str, Any]]]:
    """Per item: the grader's label code (majority of repeats), mean score, all repeats, rubric
    answers; and the failed judgements. Verdicts that cannot be read on the labels' scale are a
    UsageError with counts and examples."""
    reps: dict[str, list[float]] = defaultdict(list)
    raw: dict[str, list[float]] = defaultdict(list)
    rub: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    errors = []
    bad, unseen = Problems(), Problems()
    nums: list[float] = []
    scale, shown = ls.scale, ls.describe()
    for k, r in enumerate(scores, 1):
        if (r.get("kind") or "item") != "item":
            continue
        if r.get("error"):
            errors.append(r)
            continue
        where = r.get("where") or f"score record {k}"
        score = r.get("score")
        num = None if score is None or isinstance(score, bool) else number(score)
        if score is not None and num is None:
            bad.add("'score'(s) not a finite number (a text verdict goes in 'label')", where, score)
            continue
        try:
            lab = parse_label(r.get("label"))
        except ValueError as e:
            bad.add(f"grader 'label'(s) {e}", where, r.get("label"))
            continue
        code: float | None
        if lab is not None:
            code = ls.code(lab)
            if code is None and scale == "nominal" and not ls.declared:
                code = ls.add(lab)
                unseen.add("grader label(s) that no annotator used", where, lab)
            elif code is not None and scale == "ordinal" and not ls.known(lab):
                unseen.add("grader label(s) that no annotator used", where, lab)
            if code is None:
                what = ("outside the label set" if ls.declared else f"not on the labels' {scale} scale")
                bad.add(f"grader label(s) {what} {shown}", where, lab)
                continue
        elif "passed" in r and scale in ("binary", "nominal"):
            code = ls.passed_code(bool(r["passed"]))
            if code is None:
                bad.add(f"pass/fail verdict(s) that cannot be read as the categories {shown} (give the grader's "
                        "category in 'label')", where)
                continue
        elif num is not None:
            if scale == "binary":
                code = float(num >= threshold)
            elif scale == "nominal":
                code = ls.passed_code(num >= threshold)
                if code is None:
                    bad.add(f"score(s) that cannot be read as the categories {shown} (give the grader's category in "
                            "'label')", where, score)
                    continue
            elif scale == "ordinal" and not ls.numeric:
                bad.add(f"score(s) that cannot be placed on the ordered text labels {shown} (give the grader's "
                        "label in 'label')", where, score)
                continue
            else:
                code = _nearest(ls, num) if scale == "ordinal" else float(num)
                if ls.declared and not ls.known(code):
                    bad.add(f"score(s) outside the label set {shown}", where, score)
                    continue
                nums.append(num)
        else:
            bad.add(f"'passed' verdict(s) with no 'score' cannot be compared with {scale} labels", where)
            continue
        i = str(r["id"])
        reps[i].append(code)
        raw[i].append(float(num) if num is not None else code)
        for key, val in (r.get("rubric") or {}).items():
            rub[i][key].append(bool(val))
    bad.raise_if_any("use --scale nominal to compare text labels as categories" if scale == "binary" else "")
    if unseen:
        warn(unseen.lines()[0])
    if nums and ls.numeric and scale in ("ordinal", "continuous"):
        lo, hi = min(ls.values), max(ls.values)
        if (0 <= min(nums) and max(nums) <= 1 and (hi > 1 or lo < 0)) or max(nums) < lo or min(nums) > hi:
            warn(f"the grader's scores lie in [{fmt(min(nums))}, {fmt(max(nums))}] but the labels run from {fmt(lo)} "
                 f"to {fmt(hi)}: on different scales agreement means little (rescale the scores, or give the "
                 "grader's label in 'label')")
    label, mean = {}, {}
    for i, vals in reps.items():
        label[i] = sum(vals) / len(vals) if scale == "continuous" else _mode(vals)
        mean[i] = sum(raw[i]) / len(raw[i])
    rubric = {i: {key: sum(v) * 2 > len(v) for key, v in d.items()} for i, d in rub.items()}
    return label, mean, dict(reps), rubric, errors


def check_threshold(threshold: float | None, scores: list[dict[str, Any]]) -> None:
    """A UsageError when ``threshold`` puts every possible score on one side: it must lie in [0, 1],
    or within the scores' own range when they go beyond it (a grader scoring 0-10)."""
    if threshold is None:
        return
    vals = [number(r["score"]) for r in scores if (r.get("kind") or "item") == "item" and r.get("score") is not None]
    nums = [v for v in vals if v is not None]
    lo, hi = min([0, *nums]), max([1, *nums])
    if not (math.isfinite(threshold) and lo <= threshold <= hi):
        raise UsageError(f"--threshold must be a number from {fmt(lo)} to {fmt(hi)} (the scores' range; a score >= "
                         f"it passes), got {threshold}")
