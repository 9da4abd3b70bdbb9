"""The label set and scale of an agreement study (``envfoundry agree``): declared with
``--label-set`` and ``--scale`` or inferred from the labels, then enforced on every label and on
every grader verdict.

Inferred: numbers that are all 0/1 are binary, whole numbers with at most 10 values ordinal, other
numbers continuous; text whose words are one fail word and one pass word (``fail``/``pass``,
``no``/``yes``, ``Failed``/``Successful``, ...) is binary, other text nominal; numbers mixed with
text are refused (declare the set, or ``--scale nominal``). Text labels are matched ignoring
surrounding spaces; spellings that differ only in case are read as one label (a warning when
inferred). Declared: the order of ``--label-set`` is the order of an ordinal scale of text labels,
and of a binary one (the first is the fail, the second the pass); a label outside a declared set
is an error.

Every label becomes a number, its *code*: 0/1 for binary, the value itself for numeric ordinal and
continuous labels, the position in the set for text ordinal and nominal labels. The metrics work
on codes; :meth:`LabelSet.show` turns a code back into the label as written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import UsageError
from .values import Problems, parse_label, show_value

#: the scales of an agreement study
SCALES = ("binary", "ordinal", "continuous", "nominal")
#: fail and pass words, pairwise (``NEGATIVE[i]`` is the opposite of ``POSITIVE[i]``)
NEGATIVE = ("fail", "failed", "failure", "false", "no", "unsuccessful", "incorrect", "wrong", "bad", "reject",
            "rejected", "invalid", "n", "f")
POSITIVE = ("pass", "passed", "success", "true", "yes", "successful", "correct", "right", "good", "accept",
            "accepted", "valid", "y", "t")
LEVELS = {"binary": "nominal", "nominal": "nominal", "ordinal": "ordinal", "continuous": "interval"}
#: the most distinct whole numbers read as an ordinal scale (more: continuous)
MAX_ORDINAL = 10


def key(v: Any) -> Any:
    """What two labels are compared by: text ignoring case, numbers by value."""
    return v.casefold() if isinstance(v, str) else v


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _polarity(word: Any) -> int | None:
    k = key(word)
    return 0 if k in NEGATIVE else 1 if k in POSITIVE else None


def _binary_words(values: list[Any]) -> list[Any] | None:
    """``[fail word, pass word]`` when ``values`` are at most one of each (text), else None."""
    if not values or not all(isinstance(v, str) for v in values):
        return None
    pol = [_polarity(v) for v in values]
    if None in pol or len(pol) != len(set(pol)):
        return None
    words: list[Any] = [None, None]
    for v, p in zip(values, pol, strict=True):
        words[p] = v
    for p in (0, 1):
        if words[p] is None:  # only one side seen: name the other after its partner word
            other = key(words[1 - p])
            words[p] = (NEGATIVE if p == 0 else POSITIVE)[(POSITIVE if p == 0 else NEGATIVE).index(other)]
    return words


def parse_label_set(text: str | Sequence[Any]) -> list[Any]:
    """The labels of ``--label-set a,b,c`` (numbers read as numbers), or of a list of labels, in
    the order given; a UsageError for a label that is missing or not a label, or named twice."""
    if isinstance(text, str):
        vals = [v for v in (parse_label(part) for part in text.split(",")) if v is not None]
        if not vals:
            raise UsageError(f"--label-set needs labels separated by commas (e.g. fail,pass), got {text!r}")
    else:
        vals = []
        for v in text:
            try:
                got = parse_label(v)
            except ValueError as e:
                raise UsageError(f"--label-set: {show_value(v)} is {e}") from None
            if got is None:
                raise UsageError(f"--label-set: {show_value(v)} is no label (empty or null)")
            vals.append(got)
        if not vals:
            raise UsageError("--label-set needs labels (e.g. ['fail', 'pass']), got none")
    dup = [v for v, n in Counter(key(v) for v in vals).items() if n > 1]
    if dup:
        raise UsageError(f"--label-set names {fmt(dup[0])!r} twice (labels are compared ignoring case)")
    return vals


@dataclass
class LabelSet:
    """The labels of a study, in scale order, and how each maps to its code."""

    scale: str
    values: list[Any]
    declared: bool = False
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.numeric = all(not isinstance(v, str) for v in self.values)
        self._codes: dict[Any, float] = {}
        for n, v in enumerate(self.values):
            self._codes[key(v)] = float(v) if self.numeric and self.scale != "nominal" else float(n)

    @property
    def level(self) -> str:
        """The level of measurement of Krippendorff's alpha on this scale."""
        return LEVELS[self.scale]

    def code(self, v: Any) -> float | None:
        """The code of label ``v`` (already parsed), None when it is not on this scale."""
        k = key(v)
        if k in self._codes:
            return self._codes[k]
        if self.scale == "binary":
            if v in (0, 1) and not isinstance(v, str):
                return float(v)
            p = _polarity(v)
            return None if p is None else float(p)
        if self.scale in ("ordinal", "continuous") and self.numeric and not isinstance(v, str) and not self.declared:
            return float(v)  # a number between or beyond the labels seen: still on the scale
        return None

    def known(self, v: Any) -> bool:
        """Whether ``v`` is one of the labels of the set (not merely on its scale)."""
        return key(v) in self._codes

    def add(self, v: Any) -> float:
        """Take a new nominal category (a grader's label no annotator used); its code."""
        self.values.append(v)
        self._codes[key(v)] = float(len(self.values) - 1)
        return self._codes[key(v)]

    def show(self, code: float) -> str:
        """The label of ``code`` as written."""
        if self.numeric and self.scale != "nominal":
            return fmt(int(code) if float(code).is_integer() else code)
        return fmt(self.values[int(code)])

    def passed_code(self, passed: bool) -> float | None:
        """The code of a pass (or a fail) verdict: 1/0 on a binary scale, the pass (fail) word of a
        nominal set that has one of each; None on other scales."""
        if self.scale == "binary":
            return float(passed)
        if self.scale == "nominal":
            sides = {p: [v for v in self.values if _polarity(v) == p] for p in (0, 1)}
            if len(sides[0]) == 1 and len(sides[1]) == 1:
                return self._codes[key(sides[int(passed)][0])]
        return None

    def describe(self) -> str:
        shown = ", ".join(fmt(v) for v in self.values[:12]) + (", ..." if len(self.values) > 12 else "")
        return f"{self.scale} ({shown})" if self.scale != "continuous" else "continuous"

    def label_map(self) -> dict[str, float]:
        """Text label -> code, for the report (empty for numeric labels)."""
        return {} if self.numeric else {fmt(v): self._codes[key(v)] for v in self.values}


def _canonical_text(texts: list[tuple[str, str]], warn: list[str]) -> dict[Any, str]:
    """Casefolded text -> the commonest spelling; a warning for each label written several ways."""
    by: dict[str, Counter[str]] = {}
    for _, t in texts:
        by.setdefault(key(t), Counter())[t] += 1
    out = {}
    for k, spellings in by.items():
        best = spellings.most_common(1)[0][0]
        out[k] = best
        if len(spellings) > 1:
            ways = " and ".join(f"{s!r} ({n})" for s, n in spellings.most_common(4))
            warn.append(f"labels that differ only in case were read as one label {best!r}: {ways}")
    return out


def _mixed_error(nums: list[tuple[str, Any]], texts: list[tuple[str, Any]]) -> UsageError:
    p = Problems()
    minority, kind = (texts, "text") if len(texts) <= len(nums) else (nums, "number")
    for where, v in minority:
        p.add(f"label(s) are {kind}", where, v)
    other = nums if minority is texts else texts
    eg = ", ".join(dict.fromkeys(fmt(v) for _, v in other))
    eg = eg if len(eg) < 40 else eg[:37] + "..."
    sample = ",".join(dict.fromkeys(fmt(v) for _, v in [*other, *minority]))
    return UsageError(f"the labels mix numbers and text: {len(other)} are {'numbers' if kind == 'text' else 'text'} "
                      f"({eg}) and {p.lines()[0]}. Declare every label with --label-set (e.g. --label-set "
                      f"{sample}) or use --scale nominal to read them all as categories, or leave a label empty "
                      "for no label")


def build_label_set(observed: list[tuple[str, Any]], *, scale: str | None = None,
                    declared: list[Any] | None = None) -> LabelSet:
    """The label set of the (parsed, non-missing) labels ``observed`` as ``(where, label)``: the
    declared one, checked against them, or one inferred from them. A UsageError with counts and
    examples when they cannot be read on one scale."""
    if scale is not None and scale not in SCALES:
        raise UsageError(f"unknown scale {scale!r} (choose from: {', '.join(SCALES)})")
    if declared is not None:
        return _declared(observed, scale, declared)
    warn: list[str] = []
    nums = [(w, v) for w, v in observed if not isinstance(v, str)]
    texts = [(w, v) for w, v in observed if isinstance(v, str)]
    if nums and texts and scale != "nominal":
        raise _mixed_error(nums, texts)
    canon = _canonical_text(texts, warn)
    values: list[Any] = sorted({v for _, v in nums}) + sorted(set(canon.values()), key=key)
    if texts and nums:  # --scale nominal: numbers are categories too
        values = sorted(values, key=lambda v: (isinstance(v, str), key(v) if isinstance(v, str) else v))
    words = _binary_words(values)
    if scale is None:
        if nums:
            ints = all(float(v).is_integer() for v in values)
            scale = ("binary" if set(values) <= {0, 1} else
                     "ordinal" if ints and len(values) <= MAX_ORDINAL else "continuous")
        else:
            scale = "binary" if words else "nominal"
    elif scale == "binary":
        if nums:
            bad = Problems()
            for where, v in nums:
                if v not in (0, 1):
                    bad.add("label(s) are not 0 or 1", where, v)
            bad.raise_if_any("--scale binary takes labels 0/1 (or two text labels such as fail/pass)")
        elif not words:
            shown = ", ".join(repr(fmt(v)) for v in values[:6])
            raise UsageError(f"--scale binary, but the labels are {len(values)} text label(s) ({shown}) that are not "
                             "one fail word and one pass word; say which is the fail and which the pass with "
                             f"--label-set FAIL,PASS (e.g. --label-set {','.join(fmt(v) for v in values[:2])})")
    elif scale in ("ordinal", "continuous") and texts:
        hint = (f"give their order with --label-set LOWEST,...,HIGHEST (e.g. --label-set "
                f"{','.join(fmt(v) for v in values[:5])})" if scale == "ordinal" else "use --scale nominal")
        raise UsageError(f"--scale {scale} needs numbers, but the labels are text ({len(texts)} label(s), e.g. "
                         f"{fmt(texts[0][1])!r} at {texts[0][0]}); {hint}")
    if scale == "binary":
        values = words if words else [0, 1]
    ls = LabelSet(scale, values, declared=False, warnings=warn)
    if scale == "binary" and words:
        ls.notes.append(f"text labels read as binary: {fmt(words[0])!r} = 0 (fail), {fmt(words[1])!r} = 1 (pass)")
    return ls


def _declared(observed: list[tuple[str, Any]], scale: str | None, declared: list[Any]) -> LabelSet:
    numeric = all(not isinstance(v, str) for v in declared)
    texty = all(isinstance(v, str) for v in declared)
    values = sorted(declared) if numeric else list(declared)
    warn: list[str] = []
    if scale is None:
        if numeric:
            scale = "binary" if set(values) == {0, 1} else "ordinal"
        else:
            scale = "binary" if texty and len(values) == 2 and _binary_words(values) else "nominal"
    shown = ",".join(fmt(v) for v in values)
    if scale == "binary":
        if len(values) != 2 or (numeric and set(values) != {0, 1}):
            raise UsageError(f"--scale binary takes two labels (fail first, then pass), or 0,1; --label-set "
                             f"gives {len(values)} ({shown})")
        pol = [_polarity(v) for v in values]
        if pol == [1, 0]:
            warn.append(f"--label-set {shown} reads {fmt(values[0])!r} as 0 (fail) and {fmt(values[1])!r} as 1 "
                        "(pass), the reverse of their usual sense (the first label is the fail)")
    elif scale in ("ordinal", "continuous") and not numeric and (scale == "continuous" or not texty):
        raise UsageError(f"--scale {scale} cannot take the label set {shown}: "
                         + ("continuous labels are numbers" if scale == "continuous" else
                            "an ordinal set is all numbers or all text (in order)"))
    ls = LabelSet(scale, values, declared=True, warnings=warn)
    bad = Problems()
    cased: Counter[str] = Counter()
    known = {key(v): v for v in values}
    for where, v in observed:
        k = key(v)
        if k not in known:
            bad.add(f"label(s) outside the label set ({shown})", where, v)
        elif isinstance(v, str) and v != known[k]:
            cased[f"{v!r} as {known[k]!r}"] += 1
    bad.raise_if_any("add them to --label-set, or correct the file")
    if cased:
        ls.notes.append(f"{sum(cased.values())} label(s) matched --label-set ignoring case ("
                        + ", ".join(list(cased)[:3]) + ")")
    if scale == "binary" and not numeric:
        ls.notes.append(f"binary labels: {fmt(values[0])!r} = 0 (fail), {fmt(values[1])!r} = 1 (pass)")
    return ls


def infer_scale(values: list[Any]) -> str:
    """The scale inferred for these labels (see the module docstring)."""
    obs = [("", parse_label(v)) for v in values]
    return build_label_set([(w, v) for w, v in obs if v is not None]).scale
