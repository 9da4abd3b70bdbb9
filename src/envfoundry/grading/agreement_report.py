"""What an agreement study reports (:class:`AgreementReport`), and each of its numbers as a
:class:`Metric` with a seeded bootstrap 95% interval (:func:`metric`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.seeding import derive_seed
from . import agreement as m


@dataclass
class Metric:
    """One number of the report: its value, its bootstrap 95% interval ``[lo, hi]`` and the
    number of units (items, pairs) it was computed on."""

    name: str
    value: float
    lo: float
    hi: float
    n: int
    note: str = ""


@dataclass
class AgreementReport:
    """What ``agree`` found. ``mode``: ``"grader"`` (a grader against the reference labels) or
    ``"annotators"`` (annotators among themselves). ``disagreements``: the items where the raters
    (annotators, and the grader) do not all give the same label, most contested first."""

    scale: str
    reference: str
    n_items: int
    mode: str = "grader"
    label_set: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    confusion: dict[str, Any] | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_rubric: list[dict[str, Any]] = field(default_factory=list)
    raters: list[dict[str, Any]] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> Metric | None:
        return next((x for x in self.metrics if x.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON data: NaN and infinities become None, other unknown types strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # a numpy scalar
        return json_safe(obj.item())
    return str(obj)


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


def metric(name: str, fn: Callable[..., float], *arrays: Sequence[Any], n_boot: int, seed: int, note: str = "",
           axis: int = 0) -> Metric:
    """``fn(*arrays)`` as a :class:`Metric`, its interval from ``n_boot`` resamples of the units
    along ``axis`` (seeded by ``seed`` and ``name``)."""
    import numpy as np

    arrs = [np.asarray(a) for a in arrays]
    value = fn(*arrs)
    lo, hi = m.bootstrap_ci(fn, *arrs, n_boot=n_boot, seed=derive_seed(seed, name), axis=axis)
    return Metric(name, value, lo, hi, int(arrs[0].shape[axis]), note)
