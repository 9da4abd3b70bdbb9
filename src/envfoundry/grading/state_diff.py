"""State-diff grading: declare the changes a task requires; every other change is collateral damage.

A :class:`StateDiffSpec` lists *requirements* (:class:`Insert`, :class:`Update`, :class:`Delete`,
each with field predicates), *allowed* changes (expected side effects, reported but harmless, e.g.
``variants.stock``) and *ignored* changes (noise, not even reported, e.g. a ``sessions`` table or
an ``updated_at`` field anywhere). :func:`grade_state_diff` walks ``before.diff(after)``:

1. a change matching an ``ignore`` pattern is dropped;
2. a change claimed by a requirement belongs to it (an insert claimed by an :class:`Insert`, the
   fields named in an :class:`Update`'s ``where``, the delete of a :class:`Delete`);
3. a change matching an ``allow`` pattern is reported as allowed;
4. every other change is *collateral*; collateral is counted per record ``(table, key)``.

Scoring, exactly:

- each requirement earns a credit ``c`` in [0, 1]: 1 when met; otherwise, when its ``partial`` is
  true, the weighted fraction of its predicates that hold on its best candidate record (see each
  requirement class), else 0;
- ``passed`` iff every requirement is met and there is no collateral record; then ``value = 1.0``;
- otherwise ``value = partial_cap * (sum(w * c) / sum(w)) * max(0, 1 - collateral_penalty * n)``,
  with ``n`` collateral records and ``partial_cap < 1`` (default 0.5), so no partial or damaging
  solution can equal or exceed a correct one's 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import Change, GradeInput, Score, World
from .predicates import (  # noqa: F401 - re-exported: specs are written with these
    MISSING,
    Compare,
    Eq,
    OneOf,
    Pred,
    SameRecords,
    Satisfies,
    as_pred,
    eq,
    ge,
    gt,
    le,
    lt,
    ne,
    one_of,
    same_records,
    satisfies,
)

# ---------------------------------------------------------------- requirements


@dataclass(frozen=True)
class Insert:
    """``count`` new records in ``table`` whose fields satisfy ``where``.

    Claims up to ``count`` inserted records, best candidates first (most predicate weight
    satisfied, then lowest key); further inserts into the table, matching or not, are collateral.
    Partial credit: the weighted fraction of predicates its claimed records satisfy, averaged
    over ``count`` (an unclaimed slot earns 0). ``weights`` maps field -> predicate weight
    (default 1).
    """

    table: str
    where: Mapping[str, Any] = field(default_factory=dict)
    count: int = 1
    name: str = ""
    weight: float = 1.0
    weights: Mapping[str, float] = field(default_factory=dict)
    partial: bool = True

    def label(self) -> str:
        return self.name or f"insert into {self.table}"


@dataclass(frozen=True)
class Update:
    """Record ``table[key]`` ends with fields satisfying ``where``; changes to those fields are
    claimed. Met when every predicate holds after. Partial credit counts only progress: the
    fraction of predicates that failed before and hold after (so doing nothing earns 0)."""

    table: str
    key: str
    where: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    weight: float = 1.0
    partial: bool = True

    def label(self) -> str:
        return self.name or f"update {self.table}[{self.key}]"


@dataclass(frozen=True)
class Delete:
    """Record ``table[key]`` is deleted (credit 0 or 1)."""

    table: str
    key: str
    name: str = ""
    weight: float = 1.0

    def label(self) -> str:
        return self.name or f"delete {self.table}[{self.key}]"


Requirement = Insert | Update | Delete


@dataclass(frozen=True, slots=True)
class ChangePattern:
    """Matches changes by table, operation and field; ``None`` matches anything. A pattern with a
    ``field`` matches only field updates of that field."""

    table: str | None = None
    op: str | None = None
    field: str | None = None

    def matches(self, c: Change) -> bool:
        return ((self.table is None or self.table == c.table)
                and (self.op is None or self.op == c.op)
                and (self.field is None or self.field == c.field))


@dataclass(frozen=True)
class StateDiffSpec:
    """What a correct episode changes (``require``), may change (``allow``) and what is noise
    (``ignore``); see the module docstring for the scoring rule."""

    require: Sequence[Requirement] = ()
    allow: Sequence[ChangePattern] = ()
    ignore: Sequence[ChangePattern] = ()
    partial_cap: float = 0.5
    collateral_penalty: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.partial_cap < 1.0:
            raise ValueError(f"partial_cap must be in [0, 1), got {self.partial_cap}")
        if self.collateral_penalty < 0:
            raise ValueError(f"collateral_penalty must be >= 0, got {self.collateral_penalty}")
        for r in self.require:
            if isinstance(r, Insert) and r.count < 1:
                raise ValueError(f"{r.label()}: count must be >= 1, got {r.count}")


# --------------------------------------------------------------------- grading


def _checks(record: Mapping[str, Any] | None, where: Mapping[str, Any],
            weights: Mapping[str, float]) -> tuple[list[dict[str, Any]], float]:
    """Per-field check results and the satisfied fraction of predicate weight."""
    out, got, total = [], 0.0, 0.0
    for f, p in where.items():
        pred = as_pred(p)
        v = MISSING if record is None else record.get(f, MISSING)
        ok = pred(v)
        w = float(weights.get(f, 1.0))
        total += w
        got += w if ok else 0.0
        out.append({"field": f, "ok": ok, "expected": pred.describe(),
                    "actual": None if v is MISSING else v})
    return out, (got / total if total else 1.0)


def summarize_change(c: Change, limit: int = 160) -> str:
    """One line per change, e.g. ``update addresses[a2].city: 'Oslo' -> 'Bergen'``."""
    if c.op == "update":
        s = f"update {c.table}[{c.key}].{c.field}: {c.before!r} -> {c.after!r}"
    elif c.op == "insert":
        s = f"insert {c.table}[{c.key}] {c.after!r}"
    else:
        s = f"delete {c.table}[{c.key}]"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _change_entry(c: Change) -> dict[str, Any]:
    return {"op": c.op, "table": c.table, "key": c.key, "field": c.field,
            "summary": summarize_change(c)}


def grade_state_diff(before: World, after: World, spec: StateDiffSpec) -> Score:
    """Grade the change from ``before`` to ``after`` against ``spec`` (pure; reads only)."""
    changes = [c for c in before.diff(after) if not any(p.matches(c) for p in spec.ignore)]
    claimed: set[int] = set()
    results: list[dict[str, Any]] = []
    inserts: dict[str, list[int]] = {}
    for i, c in enumerate(changes):
        if c.op == "insert":
            inserts.setdefault(c.table, []).append(i)

    for req in spec.require:
        if isinstance(req, Insert):
            results.append(_grade_insert(req, changes, inserts.get(req.table, []), claimed))
        elif isinstance(req, Update):
            results.append(_grade_update(req, before, after, changes, claimed))
        else:
            results.append(_grade_delete(req, changes, claimed))

    allowed: list[dict[str, Any]] = []
    collateral: list[dict[str, Any]] = []
    for i, c in enumerate(changes):
        if i in claimed:
            continue
        (allowed if any(p.matches(c) for p in spec.allow) else collateral).append(_change_entry(c))
    n_coll = len({(c["table"], c["key"]) for c in collateral})

    wsum = sum(r["weight"] for r in results)
    frac = sum(r["weight"] * r["credit"] for r in results) / wsum if wsum else 1.0
    all_met = all(r["met"] for r in results)
    passed = all_met and n_coll == 0
    if passed:
        value = 1.0
    else:
        value = spec.partial_cap * frac * max(0.0, 1.0 - spec.collateral_penalty * n_coll)

    why: list[str] = []
    for r in results:
        if not r["met"]:
            bad = [f"{ck['field']} {ck['expected']} (got {ck['actual']!r})"
                   for ck in r.get("checks", []) if not ck["ok"]]
            why.append(f"missed '{r['name']}': " + (r["why"] if "why" in r else "; ".join(bad)))
    if collateral:
        why.append(f"{n_coll} record(s) changed as collateral: "
                   + "; ".join(c["summary"] for c in collateral[:3])
                   + (" ..." if len(collateral) > 3 else ""))
    explanation = (f"all {len(results)} requirement(s) met, no collateral changes"
                   if passed else " | ".join(why))
    breakdown = {
        "requirements_met": sum(1 for r in results if r["met"]),
        "requirements_total": len(results),
        "requirement_credit": frac,
        "collateral_records": n_coll,
        "requirements": results,
        "collateral": collateral,
        "allowed": allowed,
    }
    return Score(value, breakdown, explanation, passed)


def _grade_insert(req: Insert, changes: list[Change], idx: list[int], claimed: set[int]) -> dict[str, Any]:
    scored = []
    for i in idx:
        if i in claimed:
            continue
        checks, frac = _checks(changes[i].after, req.where, req.weights)
        scored.append((-frac, changes[i].key, i, checks, frac))
    scored.sort(key=lambda t: (t[0], t[1]))
    take = scored[: req.count]
    for t in take:
        claimed.add(t[2])
    full = sum(1 for t in take if t[4] >= 1.0)
    met = full >= req.count
    credit = 1.0 if met else (sum(t[4] for t in take) / req.count if req.partial else 0.0)
    res: dict[str, Any] = {
        "name": req.label(), "kind": "insert", "table": req.table, "met": met,
        "credit": credit, "weight": req.weight,
        "records": [changes[t[2]].key for t in take],
        "checks": take[0][3] if take else _checks(None, req.where, req.weights)[0],
    }
    if not take:
        res["why"] = f"no new record in {req.table}"
    elif not met and req.count > 1:
        res["why"] = f"{full} of {req.count} new records match"
    return res


def _grade_update(req: Update, before: World, after: World, changes: list[Change],
                  claimed: set[int]) -> dict[str, Any]:
    rec_b, rec_a = before.get(req.table, req.key), after.get(req.table, req.key)
    checks_a, _ = _checks(rec_a, req.where, {})
    checks_b, _ = _checks(rec_b, req.where, {})
    met = rec_a is not None and all(c["ok"] for c in checks_a)
    todo = [i for i, c in enumerate(checks_b) if not c["ok"]]
    if met:
        credit = 1.0
    elif req.partial and todo:
        credit = sum(1 for i in todo if checks_a[i]["ok"]) / len(todo)
    else:
        credit = 0.0
    for i, c in enumerate(changes):
        if c.table == req.table and c.key == req.key and c.op == "update" and c.field in req.where:
            claimed.add(i)
    res: dict[str, Any] = {"name": req.label(), "kind": "update", "table": req.table, "met": met,
                           "credit": credit, "weight": req.weight,
                           "records": [req.key], "checks": checks_a}
    if rec_a is None:
        res["why"] = f"{req.table}[{req.key}] does not exist"
    return res


def _grade_delete(req: Delete, changes: list[Change], claimed: set[int]) -> dict[str, Any]:
    hit = [i for i, c in enumerate(changes)
           if c.op == "delete" and c.table == req.table and c.key == req.key]
    claimed.update(hit)
    res: dict[str, Any] = {"name": req.label(), "kind": "delete", "table": req.table,
                           "met": bool(hit), "credit": 1.0 if hit else 0.0, "weight": req.weight,
                           "records": [req.key]}
    if not hit:
        res["why"] = f"{req.table}[{req.key}] was not deleted"
    return res


@dataclass(frozen=True)
class StateDiffGrader:
    """A :class:`~envfoundry.Grader` comparing the worlds before and after an episode.

    ``spec`` is a fixed :class:`StateDiffSpec` or a function of the :class:`GradeInput` (most
    tasks build theirs from ``g.task.data``).
    """

    spec: StateDiffSpec | Callable[[GradeInput], StateDiffSpec]
    name: str = "state_diff"
    weight: float = 1.0

    def grade(self, g: GradeInput) -> Score:
        if g.world_before is None or g.world_after is None:
            raise ValueError(f"grader {self.name!r} needs an environment with a world")
        spec = self.spec(g) if callable(self.spec) else self.spec
        return grade_state_diff(g.world_before, g.world_after, spec)
