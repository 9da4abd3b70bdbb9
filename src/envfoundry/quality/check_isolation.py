"""Checks for state shared between rollouts and between gradings.

- ``fork_isolation``: reference-solution rollouts of two different tasks, and two of the same task,
  are stepped in lock-step, in both orders, and each must end exactly as it does alone (messages,
  world changes, score). A session kept in a class attribute or a module global, a world whose
  records share a mutable value, scratch state written into ``task.data``: each makes one rollout
  see another's.
- ``grader_pure``: each grader grades the same trajectories several times, in different orders and
  interleaved with other trajectories; a grader whose score for a trajectory changes (a global
  counter, a cache of results per task) is named. Grading must also leave the episode unchanged
  and must not crash on an empty answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..core.env import Environment
from ..core.errors import GraderUndecided
from ..core.grader import GradeInput
from ..core.seeding import derive_seed
from ..core.task import Task
from ..policies.scripted import NoopPolicy, OraclePolicy, RandomPolicy
from .check_base import CheckResult, crash_text, fingerprint, first_difference, of, play, play_together


def _initial_hash(env: Environment, task: Task) -> str | None:
    ep = env.reset(task, seed=0)
    return ep.world_before.hash() if ep.world_before is not None else None


def fork_isolation(env: Environment, tasks: Sequence[Task], seed: int) -> CheckResult:
    name = "fork_isolation"
    pol: Any = OraclePolicy() if env.has_reference else RandomPolicy()
    who = "reference-solution" if env.has_reference else "scripted:random"
    picked = list(tasks[:4])
    # runs: (task, seed); the last is a second rollout of the first task with another seed
    runs = [(t, derive_seed(seed, "fork", i)) for i, t in enumerate(picked)]
    runs.append((picked[0], derive_seed(seed, "fork", "again")))
    same = len(runs) - 1
    pairs = [(i, i + 1) for i in range(0, len(picked) - 1, 2)]
    pairs = [*pairs, *[(j, i) for i, j in pairs], (0, same), (same, 0)]
    initial = {t.id: _initial_hash(env, t) for t in picked}
    solo = [fingerprint(env, play(env, t, s, pol)) for t, s in runs]

    inter: list[tuple[str, str, Any]] = []  # (task id, what differs, example)
    for i, j in pairs:
        plays = play_together(env, [runs[i], runs[j]], [pol, pol])
        for k, other, p in ((i, j, plays[0]), (j, i, plays[1])):
            what, example = first_difference(solo[k], fingerprint(env, p))
            if what:
                partner = ("another rollout of the same task" if runs[k][0].id == runs[other][0].id
                           else f"a rollout of task {runs[other][0].id}")
                first = "it stepping first" if k == i else "the other stepping first"
                inter.append((runs[k][0].id, f"task {runs[k][0].id} stepped in turn with {partner} ({first}): "
                              f"{what}", example))
    total = 2 * len(pairs)
    parts: list[tuple[str, str, Any]] = []
    if inter:
        parts.append((inter[0][0], f"{of(len(inter), total, 'interleaved ' + who + ' rollouts')} end differently "
                      f"from the same rollout alone, e.g. {inter[0][1]}", inter[0][2]))
    what, example = first_difference(solo[0], fingerprint(env, play(env, *runs[0], pol)))
    if what:
        parts.append((runs[0][0].id, f"a second solo rollout of task {runs[0][0].id} with the same seed ended "
                      f"differently ({what}): state carries over from one rollout to the next", example))
    changed = [t.id for t in picked if _initial_hash(env, t) != initial[t.id]]
    if changed:
        parts.append((changed[0], f"the initial world of {of(len(changed), len(picked), 'tasks')} changed after "
                      "rollouts (a record's mutable value changed in place, or state shared by the world factory)",
                      None))
    if parts:
        return CheckResult(name, "fail", "; ".join(d for _, d, _ in parts), parts[0][0], parts[0][2])
    return CheckResult(name, "pass", f"{total} interleaved {who} rollouts ({len(picked)} tasks, both orders, "
                       "and two of one task) match their solo runs; initial worlds untouched")


@dataclass
class _Traj:
    task: Task
    policy: str
    g: GradeInput
    state: Any


def _clone(task: Task, tag: str) -> Task:
    """The same task under a fresh id (its version string tagged): no grader has seen it yet."""
    return Task(**{**task.model_dump(), "env_version": f"{task.env_version}+check-{tag}", "id": ""})


def _grade(gr: Any, g: GradeInput) -> tuple[Any, ...]:
    try:
        s = gr.grade(g)
    except GraderUndecided:
        return ("undecided",)
    return (round(float(s.value), 9), bool(s.passed))


def grader_pure(env: Environment, tasks: Sequence[Task], seed: int) -> CheckResult:
    name = "grader_pure"
    pols: list[Any] = ([OraclePolicy()] if env.has_reference else []) + [NoopPolicy(), RandomPolicy()]
    trajs: list[_Traj] = []
    for t in tasks[: min(5, len(tasks))]:
        for pol in pols:
            p = play(env, t, derive_seed(seed, "grader_pure", t.id), pol)
            if p.error is None:  # an episode that crashed is other checks' business
                ep = p.ep
                trajs.append(_Traj(t, pol.name, GradeInput.from_episode(ep),
                                   ([m.to_dict() for m in ep.messages], ep.world.hash() if ep.world else None)))
    if not trajs:
        return CheckResult(name, "skipped", "no scripted episode finished without an error")
    # each trajectory graded in several orders by each grader: its score must never change. The
    # first pass is the first time these trajectories are graded (check_env runs this check before
    # the others). Passes 3 and 4 grade copies of the tasks under fresh ids that no grader has seen,
    # one with the reference solution's trajectory of each task first, one with it last: a cache of
    # results per task gives itself away
    rng = random.Random(derive_seed(seed, "grader_pure", "order"))
    idx = list(range(len(trajs)))
    shuffled = idx * 2
    rng.shuffle(shuffled)
    orders: list[tuple[str, list[int], str | None]] = [
        ("first, in task order", idx, None),
        ("again in task order", idx, None),
        ("in task order on copies of the tasks under fresh ids", idx, "a"),
        ("in reverse order on copies of the tasks under fresh ids", idx[::-1], "b"),
        ("twice more, shuffled among the others", shuffled, None),
    ]
    clones = {(t.id, tag): _clone(t, tag) for t in {tr.task.id: tr.task for tr in trajs}.values() for tag in "ab"}
    impure: dict[str, dict[int, list[tuple[str, Any]]]] = {}
    for gname, _, gr in env.graders:
        seen: dict[int, list[tuple[str, Any]]] = {}
        for label, order, tag in orders:
            for k in order:
                tr = trajs[k]
                g = tr.g if tag is None else replace(tr.g, task=clones[(tr.task.id, tag)])
                try:
                    seen.setdefault(k, []).append((label, _grade(gr, g)))
                except Exception as e:  # noqa: BLE001
                    on = " (on a copy of the task under a fresh id)" if tag else ""
                    return CheckResult(name, "fail", f"grader {gname!r} crashed on a scripted:{tr.policy} episode"
                                       f"{on} with {crash_text(e)}"[:400], tr.task.id, {"messages": tr.state[0][-2:]})
                if ([m.to_dict() for m in g.messages], g.world_after.hash() if g.world_after else None) != tr.state:
                    return CheckResult(name, "fail", f"grader {gname!r} changed the world or the messages it graded",
                                       tr.task.id)
        changed = {k: v for k, v in seen.items() if len({r for _, r in v}) > 1}
        if changed:
            impure[gname] = changed
    if impure:
        gname, changed = next(iter(impure.items()))
        k, hist = next(iter(changed.items()))
        first = hist[0][1]
        label, other = next((lab, r) for lab, r in hist if r != first)
        names = ", ".join(repr(n) for n in impure)
        detail = (f"grader {names} gave the same trajectory different scores depending on what it graded before "
                  f"({of(len(changed), len(trajs), 'trajectories')} changed score): e.g. the scripted:"
                  f"{trajs[k].policy} trajectory of task {trajs[k].task.id} scored {_show(first)} when graded "
                  f"{hist[0][0]}, {_show(other)} when graded {label} (a global counter, a memory of earlier answers, "
                  "or results cached per task?)")
        return CheckResult(name, "fail", detail, trajs[k].task.id, {"scores": [(lab, _show(r)) for lab, r in hist]})
    return CheckResult(name, "pass", f"each grader gives {len(trajs)} trajectories the same score in "
                       f"{len(orders)} orders ({sum(len(o) for _, o, _ in orders)} gradings each); grading is "
                       "read-only")


def _show(r: tuple[Any, ...]) -> str:
    return "undecided" if r[0] == "undecided" else f"{r[0]:g} ({'pass' if r[1] else 'fail'})"
