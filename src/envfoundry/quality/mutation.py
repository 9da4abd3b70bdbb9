"""Grader mutation tests: replay the reference solution with small changes and watch the score.

The reference solution is driven on each task and its actions recorded; each mutation replays a
changed copy of them from the same seed. *Wrong* mutations must lower the score (``killed``: not
passed, or a value below the reference's); *equivalent* ones must not (``preserved``).

Wrong:

- ``off_by_one_answer``: every number in the final answer shifted by +1 (and by -1);
- ``other_answer``: the final answer replaced by another task's reference answer;
- ``hedge_answer`` (with an ``answer_format``): the right answer hedged with a wrong one, in two
  answer blocks (both orders) or as "wrong or right" in one block;
- ``off_by_one_arg``: one number argument of a write call shifted by +1 or -1;
- ``wrong_value_arg``: one string argument of a write call swapped for another valid value (another
  member of its enum, or a token of the same shape seen in the observations, e.g. ``SKU-0012``);
- ``missing_step``: one write call dropped;
- ``extra_write``: one more write call with plausible arguments after the correct solution
  (collateral damage).

Equivalent: ``whitespace_around`` (around the final text), ``whitespace_in_answer`` (inside the
answer block), ``reorder_keys`` (arguments as JSON text with the keys reversed), ``int_as_float``
(``2`` as ``2.0`` where the schema says integer or number).

The generic mutations are made in :mod:`.mutators`. An environment adds its own through
``Environment(mutations=fn)``: ``fn(task, actions)`` yields ``(name, actions, kind)`` with kind
``"wrong"`` or ``"equivalent"``.

A text mutation applies only when the grader reads the final text (blanking it lowers the score);
a tool mutation applies only when it changes the final world (without a world: the tool results).
Mutations that do not apply are counted apart and excluded from the rates.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.env import Environment, Episode
from ..core.messages import Message
from ..core.outcome import Score
from ..core.seeding import derive_seed, rng_for
from ..core.task import Task
from .mutators import EQUIVALENT, WRONG, Mutation, MutationGenerator, Reference
from .probes import extract_answer

_EPS = 1e-9


# ------------------------------------------------------------------ the reference solution
def record_reference(env: Environment, task: Task, *, seed: int) -> Reference:
    """Drive the reference solution to the end of an episode, recording copies of its actions."""
    actions: list[Message] = []
    ep: Episode | None = None
    try:
        ep = env.reset(task, seed=seed)
        while not (ep.terminated or ep.truncated) and ep.turns < env.max_turns:
            action = env.reference_action(ep)
            actions.append(copy.deepcopy(action))
            ep.step(action)
        score = env.grade(ep)
    except Exception as e:  # noqa: BLE001 - a broken reference is reported, not raised
        return Reference(task, seed, actions, "", None, None, f"{type(e).__name__}: {e}", ep)
    final = next((m.content for m in reversed(ep.messages) if m.role == "assistant"), "")
    return Reference(task, seed, actions, final, extract_answer(env, final), score, None, ep)


def reference_seed(seed: int, task: Task) -> int:
    """The episode seed the audit drives a task's reference solution with."""
    return derive_seed(seed, task.id, "mutation")


def record_references(env: Environment, tasks: Sequence[Task], *, seed: int) -> dict[str, Reference]:
    """The reference solution of each task, with whether its final text matters to the grader."""
    out: dict[str, Reference] = {}
    for t in tasks:
        rseed = reference_seed(seed, t)
        ref = record_reference(env, t, seed=rseed)
        if ref.error is None and ref.score is not None and ref.actions:
            blank = copy.deepcopy(ref.actions)
            blank[-1].content = ""
            b = replay(env, t, rseed, blank)
            ref.text_matters = (b.score is None or b.score.value < ref.score.value - _EPS
                                or b.score.passed != ref.score.passed)
        out[t.id] = ref
    return out


@dataclass
class Replay:
    """A replayed episode and its score, or why there is none."""

    ep: Episode | None
    score: Score | None
    error: str | None


def replay(env: Environment, task: Task, seed: int, actions: Sequence[Message]) -> Replay:
    """Step copies of ``actions`` from a fresh episode, then grade (errors are returned, not raised)."""
    try:
        ep = env.reset(task, seed=seed)
        for a in actions:
            if ep.terminated or ep.truncated:
                break
            ep.step(copy.deepcopy(a))
    except Exception as e:  # noqa: BLE001 - an environment bug on a mutated call is reported
        return Replay(None, None, f"environment error: {type(e).__name__}: {e}")
    try:
        return Replay(ep, env.grade(ep), None)
    except Exception as e:  # noqa: BLE001
        return Replay(ep, None, f"grader error: {type(e).__name__}: {e}")


def reference_answers(env: Environment, tasks: Sequence[Task], seed: int) -> list[str]:
    """The reference answers of ``tasks``, one per task that has one (empty without a reference
    solution); repeated answers are kept, so the most common answers can be counted."""
    if not env.has_reference:
        return []
    out: list[str] = []
    for t in tasks:
        ref = record_reference(env, t, seed=derive_seed(seed, t.id, "reference"))
        if ref.answer:
            out.append(ref.answer)
    return out


@dataclass
class MutationOutcome:
    """One mutation on one task. ``status``: killed, survived, error (wrong mutations);
    preserved, dropped (equivalent ones); not_applicable."""

    task_id: str
    name: str
    kind: str
    detail: str
    status: str
    score: float | None
    reference_score: float
    explanation: str = ""
    example: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MutationReport:
    """All mutation outcomes of an audit, with kill and preservation rates."""

    outcomes: list[MutationOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference_failed: list[str] = field(default_factory=list)  # tasks whose reference solution did not pass

    def _count(self, *status: str) -> int:
        return sum(o.status in status for o in self.outcomes)

    @property
    def kill_rate(self) -> float | None:
        n = self._count("killed", "survived", "error")
        return self._count("killed") / n if n else None

    @property
    def preservation_rate(self) -> float | None:
        n = self._count("preserved", "dropped")
        return self._count("preserved") / n if n else None

    @property
    def failures(self) -> list[MutationOutcome]:
        """Wrong mutations that kept their score and equivalent ones that lost it."""
        return [o for o in self.outcomes if o.status in ("survived", "error", "dropped")]

    def by_name(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for o in self.outcomes:
            d = out.setdefault(o.name, {"kind": o.kind, "applicable": 0, "ok": 0, "failed": 0, "not_applicable": 0})
            if o.status == "not_applicable":
                d["not_applicable"] += 1
                continue
            d["applicable"] += 1
            d["ok" if o.status in ("killed", "preserved") else "failed"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        first: dict[str, dict[str, Any]] = {}
        for o in self.failures:
            first.setdefault(o.name, o.to_dict())
        return {
            "kill_rate": self.kill_rate,
            "killed": self._count("killed"),
            "wrong_applicable": self._count("killed", "survived", "error"),
            "preservation_rate": self.preservation_rate,
            "preserved": self._count("preserved"),
            "equivalent_applicable": self._count("preserved", "dropped"),
            "not_applicable": self._count("not_applicable"),
            "by_name": self.by_name(),
            "failures": list(first.values()),
            "notes": self.notes,
        }


# ------------------------------------------------------------------ replaying
def _effect(ep: Episode | None) -> Any:
    """What an episode did: its world changes (cheap: forks share their root), else its tool results."""
    if ep is None:
        return None
    if ep.world is not None and ep.world_before is not None:
        return json.dumps([c.to_dict() for c in ep.world_before.diff(ep.world)], sort_keys=True, default=str)
    return tuple(m.content for m in ep.messages if m.role == "tool")


def _touched(ep: Episode | None) -> set[tuple[str, str]]:
    """The (table, key) records an episode changed (empty without a world)."""
    if ep is None or ep.world is None or ep.world_before is None:
        return set()
    return {(c.table, c.key) for c in ep.world_before.diff(ep.world)}


def _dump(actions: Sequence[Message]) -> str:
    return json.dumps([a.to_dict() for a in actions], default=str)


# ------------------------------------------------------------------ running
def _judge(m: Mutation, r: Replay, ref_score: Score, task: Task) -> MutationOutcome:
    base = MutationOutcome(task.id, m.name, m.kind, m.detail, "", r.score.value if r.score else None,
                           ref_score.value, (r.score.explanation if r.score else r.error) or "")
    if m.kind == WRONG:
        if r.score is None:
            base.status = "error"
        else:
            lower = (not r.score.passed) or r.score.value < ref_score.value - _EPS
            base.status = "killed" if lower else "survived"
    else:
        kept = r.score is not None and bool(r.score.passed) == bool(ref_score.passed) and (
            r.score.value >= ref_score.value - _EPS)
        base.status = "preserved" if kept else "dropped"
    if base.status in ("survived", "error", "dropped"):
        base.example = [a.to_dict() for a in m.actions][-6:]
    return base


def _domain(env: Environment, task: Task, actions: list[Message]) -> list[Mutation]:
    hook: Callable[..., Any] | None = getattr(env, "mutations", None)
    if hook is None:
        return []
    out = []
    for name, acts, kind in hook(task, copy.deepcopy(actions)):
        if kind not in (WRONG, EQUIVALENT):
            raise ValueError(f"mutation {name!r}: kind must be 'wrong' or 'equivalent', got {kind!r}")
        out.append(Mutation(str(name), kind, list(acts), f"domain mutation {name}", domain=True))
    return out


def mutation_test(env: Environment, tasks: Sequence[Task], *, seed: int = 0, pool: Sequence[str] = (),
                  references: dict[str, Reference] | None = None) -> MutationReport:
    """Run every applicable mutation on each task; ``pool`` holds other tasks' reference answers,
    ``references`` the tasks' recorded reference solutions (recorded here when not given)."""
    report = MutationReport()
    if not env.has_reference:
        report.notes.append("the environment has no reference solution: no mutation tests")
        return report
    refs = references if references is not None else record_references(env, tasks, seed=seed)
    for task in tasks:
        rseed = reference_seed(seed, task)
        ref = refs.get(task.id) or record_reference(env, task, seed=rseed)
        if ref.error or ref.score is None or not ref.score.passed:
            report.reference_failed.append(task.id)
            report.notes.append(f"task {task.id}: the reference solution does not pass "
                                f"({ref.error or (ref.score.explanation if ref.score else '')}); skipped")
            continue
        base = replay(env, task, rseed, ref.actions)
        if base.score is None or base.score.value != ref.score.value:
            report.notes.append(f"task {task.id}: replaying the reference does not reproduce its score; skipped")
            continue
        text_matters = bool(ref.text_matters)
        gen = MutationGenerator(env, ref, rng_for(seed, task.id, "mutation"), pool, text_matters)
        ref_effect = _effect(base.ep)
        try:
            domain = _domain(env, task, ref.actions)
        except Exception as e:  # noqa: BLE001 - a broken hook is reported, the rest still runs
            report.notes.append(f"task {task.id}: the environment's mutations hook raised {type(e).__name__}: {e}")
            domain = []
        ref_dump = _dump(ref.actions)
        for m in [*gen.text(), *gen.tools(), *domain]:
            if _dump(m.actions) == ref_dump:  # json, not ==: 2.0 == 2 but is written differently
                continue
            r = replay(env, task, rseed, m.actions)
            if m.kind == WRONG and not m.text and not m.domain and r.ep is not None and _effect(r.ep) == ref_effect:
                report.outcomes.append(MutationOutcome(task.id, m.name, m.kind, m.detail, "not_applicable",
                                                       None, ref.score.value, "the change had no effect"))
                continue
            report.outcomes.append(_judge(m, r, ref.score, task))
        ref_records = _touched(base.ep)
        for cands in gen.extra_writes():  # per write tool: an extra call that changes the world,
            tried = [(m, r) for m in cands if (r := replay(env, task, rseed, m.actions)).ep is not None
                     and _effect(r.ep) != ref_effect]  # preferably records the solution left alone
            extra = next(((m, r) for m, r in tried if _touched(r.ep) - ref_records), tried[0] if tried else None)
            if extra is not None:
                report.outcomes.append(_judge(extra[0], extra[1], ref.score, task))
            elif cands:
                report.outcomes.append(MutationOutcome(task.id, "extra_write", WRONG, cands[0].detail,
                                                       "not_applicable", None, ref.score.value,
                                                       "no extra call of this tool changed the world"))
    return report
