"""``envfoundry check``: conformance checks that any environment must pass before training.

Each check returns pass, fail or skipped (with why); a failure says how many tasks (or calls, or
rollouts) fail, names one and shows a minimal example. The checks drive episodes directly (no run
store) so they are quick:

- ``determinism``: the same seed gives the same tasks, and scripted rollouts give the same
  messages and scores, in this process and in a fresh one that regenerates the tasks at least a
  second later, in a time zone where it is another day (see :mod:`.check_fresh`); another seed
  changes the tasks.
- ``task_ids``: ids unique within each split, stable (recomputing from content agrees) and no task
  in two splits.
- ``solvable``: the oracle (reference solution) gets the top score on every sampled task.
- ``noop_low`` / ``random_low``: doing nothing, or random valid calls, rarely passes.
- ``tool_schemas``: every tool's parameters are valid JSON Schema (draft 2020-12).
- ``bad_calls``: every enum member and the edge values a schema allows never crash a tool; unknown
  tools, garbled JSON, wrong types and missing arguments come back as a specific error
  observation (see :mod:`.check_calls`).
- ``fork_isolation``: reference-solution rollouts of different tasks, and of the same task,
  stepped in turn in both orders, end as they do alone; initial worlds stay unchanged.
- ``replay``: replaying a trajectory's actions gives the same observations and the same score.
- ``grader_pure``: each grader gives a trajectory the same score whatever it graded before, leaves
  the episode unchanged, and returns a score (or says it cannot decide) on an empty answer (see
  :mod:`.check_isolation`).

An environment whose sampled split has no tasks fails (there is nothing to train on).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.env import Environment
from ..core.messages import Message
from ..core.outcome import Outcome
from ..core.task import Task
from ..policies.scripted import NoopPolicy, OraclePolicy, RandomPolicy
from ..rollout.engine import RolloutConfig, run_rollout
from . import check_calls, check_fresh, check_isolation
from .check_base import CheckConfig, CheckResult, of

__all__ = ["CHECKS", "CheckConfig", "CheckReport", "CheckResult", "check_env"]


@dataclass
class CheckReport:
    env: str
    version: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "version": self.version, "ok": self.ok,
                "checks": [r.to_dict() for r in self.results]}


def _rollouts(env: Environment, tasks: Sequence[Task], policy: Any, samples: int, seed: int) -> list[dict[str, Any]]:
    cfg = RolloutConfig(samples=samples, seed=seed)

    async def go() -> list[dict[str, Any]]:
        return [await run_rollout(env, t, s, policy, cfg) for t in tasks for s in range(samples)]

    return asyncio.run(go())


def _fingerprint(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["task_id"], r["sample"], r["outcome"], r["score"], json.dumps(r["messages"], sort_keys=True))
            for r in recs]


def _errors(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["outcome"] in Outcome.ERRORS]


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


class _Checker:
    def __init__(self, env: Environment, spec: str | None, cfg: CheckConfig) -> None:
        self.env, self.spec, self.cfg = env, spec, cfg
        self.split = cfg.split or ("test" if "test" in env.splits else env.splits[0])
        self.tasks = list(env.tasks(self.split, seed=cfg.seed)[: cfg.tasks])
        self.generated_at = time.time()  # the fresh process regenerates them at least a second after this

    def _child_spec(self) -> tuple[str, dict[str, str]] | None:
        if self.env.loaded_from is not None:
            return self.env.loaded_from
        return (self.spec, {}) if self.spec else None

    # each check returns a CheckResult ------------------------------------------------------
    def determinism(self) -> CheckResult:
        n = len(self.tasks)
        where = self._child_spec() if self.cfg.subprocess else None
        k = min(n, 10)
        child = (check_fresh.start_child(where[0], where[1], self.split, k, self.cfg.seed, self.generated_at)
                 if where else None)
        try:
            res = self._determinism_here()
            if res.status == "fail" or child is None:
                if child is None and res.status == "pass":
                    res.detail += "; not checked in a fresh process (" + (
                        "no spec to load it by)" if self.cfg.subprocess else "turned off)")
                return res
            here = check_fresh.task_fingerprint(self.env, self.tasks[:k], self.cfg.seed)
            failed = check_fresh.compare_child(child, here)
            if failed is not None:
                return failed
            res.detail += f"; {k} tasks and their rollouts are the same in a fresh process (a second later, " \
                          "another day's time zone, another hash seed)"
            return res
        finally:
            if child is not None and child.poll() is None:
                child.kill()
                child.communicate()

    def _determinism_here(self) -> CheckResult:
        name, n = "determinism", len(self.tasks)
        ids = [t.id for t in self.tasks]
        fresh = self.env.__class__.__new__(self.env.__class__)
        fresh.__dict__.update(self.env.__dict__)
        fresh._task_cache = {}  # regenerate instead of reading the cache
        regenerated = list(fresh.tasks(self.split, seed=self.cfg.seed)[: self.cfg.tasks])
        bad = [i for i in range(n) if i >= len(regenerated) or regenerated[i].id != ids[i]]
        if bad:
            a = self.tasks[bad[0]]
            b = regenerated[bad[0]] if bad[0] < len(regenerated) else None
            return CheckResult(name, "fail", f"{of(len(bad), n, 'tasks')} came out different when the same seed was "
                               "generated again", a.id, {"first": a.prompt[:200], "second": b and b.prompt[:200]})
        if [t.id for t in self.env.tasks(self.split, seed=self.cfg.seed)[: self.cfg.tasks]] != ids:
            return CheckResult(name, "fail", "the task source is not stable across calls")
        other = [t.id for t in fresh.tasks(self.split, seed=self.cfg.seed + 1)[: self.cfg.tasks]]
        for pol in (RandomPolicy(), OraclePolicy() if self.env.has_reference else NoopPolicy()):
            a = _fingerprint(_rollouts(self.env, self.tasks, pol, self.cfg.samples, self.cfg.seed))
            b = _fingerprint(_rollouts(self.env, self.tasks, pol, self.cfg.samples, self.cfg.seed))
            diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
            if diff:
                x, y = diff[0]
                return CheckResult(name, "fail", f"{of(len(diff), len(a), f'scripted:{pol.name} rollouts')} differ "
                                   "when repeated with the same seed", x[0],
                                   {"sample": x[1], "first": x[3:5], "second": y[3:5]})
        detail = f"{n} tasks, scripted rollouts repeat exactly"
        if other and other == ids:
            detail += "; note: --seed does not change the tasks"
        return CheckResult(name, "pass", detail)

    def task_ids(self) -> CheckResult:
        name = "task_ids"
        seen: dict[str, str] = {}
        problems: list[tuple[str, str, str, Any]] = []  # (kind, what, task id, example)
        total = 0
        for split in self.env.splits:
            local: set[str] = set()
            for t in self.env.tasks(split, seed=self.cfg.seed)[: max(self.cfg.tasks * 10, 200)]:
                total += 1
                if t.id in local:
                    problems.append(("duplicated", f"duplicate id in split {split!r}", t.id,
                                     {"prompt": t.prompt[:200]}))
                local.add(t.id)
                if Task(**{**t.model_dump(), "id": ""}).id != t.id:
                    problems.append(("unstable", "the id is not the hash of its content (changed after it was made?)",
                                     t.id, None))
                if t.id in seen and seen[t.id] != split:
                    problems.append(("in two splits", f"in two splits ({seen[t.id]} and {split})", t.id,
                                     {"prompt": t.prompt[:200]}))
                seen.setdefault(t.id, split)
        if problems:
            kinds = {k: sum(1 for p in problems if p[0] == k) for k in dict.fromkeys(p[0] for p in problems)}
            _, what, tid, example = problems[0]
            counts = ", ".join(f"{c} {k}" for k, c in kinds.items())
            return CheckResult(name, "fail", f"{of(len(problems), total, 'tasks')} have bad ids ({counts}), e.g. "
                               f"{tid}: {what}", tid, example)
        return CheckResult(name, "pass", f"{len(seen)} ids unique, stable, splits disjoint")

    def solvable(self) -> CheckResult:
        name = "solvable"
        if not self.env.has_reference:
            return CheckResult(name, "skipped", "the environment has no reference solution")
        recs = _rollouts(self.env, self.tasks, OraclePolicy(), 1, self.cfg.seed)
        bad = [r for r in recs if r["outcome"] != Outcome.COMPLETED or not r["passed"]]
        if bad:
            r = bad[0]
            outcomes = {o: sum(1 for b in bad if b["outcome"] == o) for o in dict.fromkeys(b["outcome"] for b in bad)}
            how = ", ".join(f"{c} {o}" for o, c in outcomes.items())
            why = _last_line(r["error"]) if r["error"] else (r["explanation"] or f"score {r['score']}")
            return CheckResult(name, "fail", f"{of(len(bad), len(recs), 'tasks')} unsolvable by the reference "
                               f"solution ({how}), e.g. task {r['task_id']} ({r['outcome']}): {why}"[:600],
                               r["task_id"], {"messages": r["messages"][-4:]})
        return CheckResult(name, "pass", f"oracle passes {len(recs)}/{len(recs)} tasks")

    def _low(self, name: str, policy: Any, limit: float) -> CheckResult:
        recs = _rollouts(self.env, self.tasks, policy, self.cfg.samples, self.cfg.seed)
        errs = _errors(recs)
        if errs:
            e = errs[0]
            return CheckResult(name, "fail", f"{of(len(errs), len(recs), f'scripted:{policy.name} rollouts')} ended "
                               f"in an error, e.g. {e['outcome']}: {_last_line(e['error'])}"[:600], e["task_id"],
                               {"messages": e["messages"][-3:]})
        passed = [r for r in recs if r["passed"]]
        rate = len(passed) / len(recs) if recs else 0.0
        if rate > limit:
            tasks = len({r["task_id"] for r in passed})
            return CheckResult(name, "fail", f"scripted:{policy.name} passes {of(len(passed), len(recs), 'rollouts')} "
                               f"({rate:.1%}, limit {limit:.0%}) on {of(tasks, len(self.tasks), 'tasks')}",
                               passed[0]["task_id"], {"messages": passed[0]["messages"][-2:]})
        return CheckResult(name, "pass", f"scripted:{policy.name} passes {rate:.1%}")

    def noop_low(self) -> CheckResult:
        return self._low("noop_low", NoopPolicy(), self.cfg.noop_max)

    def random_low(self) -> CheckResult:
        return self._low("random_low", RandomPolicy(), self.cfg.random_max)

    def tool_schemas(self) -> CheckResult:
        name = "tool_schemas"
        if not self.env.tools:
            return CheckResult(name, "skipped", "the environment has no tools")
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        bad: list[str] = []
        for s in self.env.tool_schemas():
            fn = s.get("function", {})
            try:
                Draft202012Validator.check_schema(fn.get("parameters", {}))
            except SchemaError as e:
                bad.append(f"tool {fn.get('name')!r}: invalid JSON Schema: {e.message}")
                continue
            if not fn.get("description"):
                bad.append(f"tool {fn.get('name')!r} has no description (a docstring)")
        if bad:
            return CheckResult(name, "fail", f"{of(len(bad), len(self.env.tools), 'tools')} have bad schemas, e.g. "
                               + "; ".join(bad[:3]))
        return CheckResult(name, "pass", f"{len(self.env.tools)} tool schemas valid")

    def bad_calls(self) -> CheckResult:
        return check_calls.bad_calls(self.env, self.tasks, self.cfg.seed)

    def fork_isolation(self) -> CheckResult:
        return check_isolation.fork_isolation(self.env, self.tasks, self.cfg.seed)

    def replay(self) -> CheckResult:
        name = "replay"
        pol = OraclePolicy() if self.env.has_reference else RandomPolicy()
        recs = [r for r in _rollouts(self.env, self.tasks[: min(10, len(self.tasks))], pol, 1, self.cfg.seed)
                if r["outcome"] in Outcome.SCORED]
        bad: list[tuple[str, str, Any]] = []
        for rec in recs:
            task = next(t for t in self.tasks if t.id == rec["task_id"])
            ep = self.env.reset(task, seed=rec["seed"])
            for m in rec["messages"][ep.prefix_len:]:
                if m["role"] == "assistant" and not (ep.terminated or ep.truncated):
                    ep.step(Message.from_dict(m))
            replayed = [m.to_dict() for m in ep.messages]
            if replayed != rec["messages"]:
                i = next((j for j, (x, y) in enumerate(zip(replayed, rec["messages"], strict=False)) if x != y),
                         min(len(replayed), len(rec["messages"])))
                bad.append((task.id, "replaying the actions gave different observations",
                            {"turn": i, "stored": rec["messages"][i:i + 1], "replayed": replayed[i:i + 1]}))
                continue
            score = self.env.grade(ep)
            if score.value != rec["score"]:
                bad.append((task.id, f"re-grading gave {score.value}, stored {rec['score']}", None))
        if bad:
            tid, what, example = bad[0]
            return CheckResult(name, "fail", f"{of(len(bad), len(recs), 'replayed trajectories')} differ, e.g. task "
                               f"{tid}: {what}", tid, example)
        return CheckResult(name, "pass", f"{len(recs)} replayed trajectories re-grade to the stored scores")

    def grader_pure(self) -> CheckResult:
        return check_isolation.grader_pure(self.env, self.tasks, self.cfg.seed)


CHECKS: tuple[str, ...] = ("determinism", "task_ids", "solvable", "noop_low", "random_low", "tool_schemas",
                           "bad_calls", "fork_isolation", "replay", "grader_pure")
#: checks that need at least one sampled task
_NEED_TASKS = frozenset(CHECKS) - {"task_ids", "tool_schemas"}


def check_env(env: Environment, *, spec: str | None = None, config: CheckConfig | None = None,
              only: Sequence[str] | None = None,
              on_result: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Run the conformance checks; a check that raises is itself reported as a failure. An
    environment whose split has no tasks fails (result ``tasks``) and the checks that need a
    task are skipped."""
    cfg = config or CheckConfig()
    checker = _Checker(env, spec, cfg)
    report = CheckReport(env.name, env.version)

    def add(res: CheckResult) -> None:
        report.results.append(res)
        if on_result is not None:
            on_result(res)

    def run(name: str) -> CheckResult:
        try:
            return getattr(checker, name)()
        except Exception as e:  # noqa: BLE001 - a broken environment must not crash the checker
            return CheckResult(name, "fail", f"the check raised {type(e).__name__}: {e}"[:500])

    names = list(only or CHECKS)
    if not checker.tasks:
        others = [s for s in env.splits if s != checker.split and len(env.tasks(s, seed=cfg.seed)) > 0]
        hint = f" (split {others[0]!r} has tasks: --split {others[0]})" if others else ""
        add(CheckResult("tasks", "fail", f"split {checker.split!r} has no tasks (seed {cfg.seed}): there is nothing "
                        f"to check, train or evaluate on{hint}"))
    # grader_pure runs first (reported in its place): its first grading of each trajectory is then
    # the first the graders see of these tasks, so a grader that remembers what it graded shows it
    early = {"grader_pure": run("grader_pure")} if checker.tasks and "grader_pure" in names else {}
    for name in names:
        if not checker.tasks and name in _NEED_TASKS:
            add(CheckResult(name, "skipped", "no tasks"))
        else:
            add(early[name] if name in early else run(name))
    return report
