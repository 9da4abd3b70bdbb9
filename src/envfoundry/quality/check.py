"""``envfoundry check``: conformance checks that any environment must pass before training.

Each check returns pass, fail or skipped (with why); a failure names the task and shows a minimal
example. The checks drive episodes directly (no run store) so they are quick:

- ``determinism``: the same seed gives the same tasks, and scripted rollouts give the same
  messages and scores, in this process and in a fresh one; another seed changes the tasks.
- ``task_ids``: ids unique within each split, stable (recomputing from content agrees) and no task
  in two splits.
- ``solvable``: the oracle (reference solution) gets the top score on every sampled task.
- ``noop_low`` / ``random_low``: doing nothing, or random valid calls, rarely passes.
- ``tool_schemas``: every tool's parameters are valid JSON Schema (draft 2020-12).
- ``bad_calls``: unknown tools, garbled JSON, wrong types and missing arguments come back as a
  specific error observation; odd but well-typed values (empty strings, 0, negative, huge) never
  crash a tool.
- ``fork_isolation``: interleaved rollouts of one task do not see each other's writes and leave
  the task's initial world unchanged.
- ``replay``: replaying a trajectory's actions gives the same observations and the same score.
- ``grader_pure``: grading twice agrees, grading changes neither world nor messages, and a grader
  given an empty answer returns a score (or says it cannot decide) instead of crashing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.env import Environment, Episode
from ..core.errors import GraderUndecided
from ..core.messages import Message, ToolCall
from ..core.task import Task
from ..policies.scripted import NoopPolicy, OraclePolicy, RandomPolicy
from ..rollout.engine import RolloutConfig, run_rollout


@dataclass
class CheckResult:
    name: str
    status: str  # "pass" | "fail" | "skipped"
    detail: str = ""
    task_id: str | None = None
    example: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckConfig:
    """How much to sample. ``noop_max``/``random_max`` are the pass rates above which a probe that
    does no real work counts as too successful."""

    tasks: int = 20
    samples: int = 2
    seed: int = 0
    split: str | None = None
    noop_max: float = 0.0
    random_max: float = 0.1
    subprocess: bool = True


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


def _first_error(recs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in recs if r["outcome"] in ("env_error", "grader_error", "policy_error")), None)


def fingerprint_in_process(spec: str, split: str, n: int, seed: int) -> dict[str, Any]:
    """What the cross-process determinism check compares (also run in a child process)."""
    from ..envs import load

    env = load(spec)
    tasks = list(env.tasks(split, seed=seed)[:n])
    recs = _rollouts(env, tasks, RandomPolicy(), 1, seed)
    return {"ids": [t.id for t in tasks], "scores": [r["score"] for r in recs],
            "outcomes": [r["outcome"] for r in recs]}


class _Checker:
    def __init__(self, env: Environment, spec: str | None, cfg: CheckConfig) -> None:
        self.env, self.spec, self.cfg = env, spec, cfg
        self.split = cfg.split or ("test" if "test" in env.splits else env.splits[0])
        self.tasks = list(env.tasks(self.split, seed=cfg.seed)[: cfg.tasks])

    # each check returns a CheckResult ------------------------------------------------------
    def determinism(self) -> CheckResult:
        name = "determinism"
        again = list(self.env.tasks(self.split, seed=self.cfg.seed)[: self.cfg.tasks])
        fresh = self.env.__class__.__new__(self.env.__class__)
        fresh.__dict__.update(self.env.__dict__)
        fresh._task_cache = {}  # regenerate instead of reading the cache
        regenerated = list(fresh.tasks(self.split, seed=self.cfg.seed)[: self.cfg.tasks])
        for a, b in zip(self.tasks, regenerated, strict=False):
            if a.id != b.id:
                return CheckResult(name, "fail", "the same seed generated different tasks", a.id,
                                   {"first": a.prompt[:200], "second": b.prompt[:200]})
        if [t.id for t in again] != [t.id for t in self.tasks]:
            return CheckResult(name, "fail", "task source is not stable across calls")
        other = [t.id for t in fresh.tasks(self.split, seed=self.cfg.seed + 1)[: self.cfg.tasks]]
        for pol in (RandomPolicy(), OraclePolicy() if self.env.has_reference else NoopPolicy()):
            a = _fingerprint(_rollouts(self.env, self.tasks, pol, self.cfg.samples, self.cfg.seed))
            b = _fingerprint(_rollouts(self.env, self.tasks, pol, self.cfg.samples, self.cfg.seed))
            for x, y in zip(a, b, strict=True):
                if x != y:
                    return CheckResult(name, "fail", f"scripted:{pol.name} rollouts differ under the same seed",
                                       x[0], {"sample": x[1], "first": x[3:5], "second": y[3:5]})
        detail = f"{len(self.tasks)} tasks, scripted rollouts repeat exactly"
        if self.spec and self.cfg.subprocess:
            code = ("import json,sys; from envfoundry.quality.check import fingerprint_in_process as f; "
                    "print(json.dumps(f(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))")
            n = min(self.cfg.tasks, 10)
            r = subprocess.run([sys.executable, "-c", code, self.spec, self.split, str(n), str(self.cfg.seed)],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                return CheckResult(name, "fail", f"a fresh process could not load the environment: {r.stderr[-400:]}")
            child = json.loads(r.stdout.strip().splitlines()[-1])
            here = fingerprint_in_process(self.spec, self.split, n, self.cfg.seed)
            if child != here:
                bad = next((i for i, (a, b) in enumerate(zip(here["ids"], child["ids"], strict=False)) if a != b), 0)
                return CheckResult(name, "fail", "another process generated different tasks or scores "
                                   "(hash randomisation, set order, time or global state?)",
                                   here["ids"][bad] if here["ids"] else None,
                                   {"this_process": here["ids"][:3], "fresh_process": child["ids"][:3]})
            detail += ", also across processes"
        if other and other == [t.id for t in self.tasks]:
            detail += "; note: --seed does not change the tasks"
        return CheckResult(name, "pass", detail)

    def task_ids(self) -> CheckResult:
        name = "task_ids"
        seen: dict[str, str] = {}
        for split in self.env.splits:
            ids = [t for t in self.env.tasks(split, seed=self.cfg.seed)[: max(self.cfg.tasks * 10, 200)]]
            local: set[str] = set()
            for t in ids:
                if t.id in local:
                    return CheckResult(name, "fail", f"duplicate task id in split {split!r}", t.id,
                                       {"prompt": t.prompt[:200]})
                local.add(t.id)
                recomputed = Task(**{**t.model_dump(), "id": ""}).id
                if recomputed != t.id:
                    return CheckResult(name, "fail", "task id is not the hash of its content", t.id)
                if t.id in seen and seen[t.id] != split:
                    return CheckResult(name, "fail", f"task in two splits ({seen[t.id]} and {split})", t.id,
                                       {"prompt": t.prompt[:200]})
                seen[t.id] = split
        return CheckResult(name, "pass", f"{len(seen)} ids unique, stable, splits disjoint")

    def solvable(self) -> CheckResult:
        name = "solvable"
        if not self.env.has_reference:
            return CheckResult(name, "skipped", "the environment has no reference solution")
        recs = _rollouts(self.env, self.tasks, OraclePolicy(), 1, self.cfg.seed)
        for r in recs:
            if r["outcome"] != "completed" or not r["passed"]:
                why = r["error"] or r["explanation"]
                return CheckResult(name, "fail", f"the oracle did not solve the task ({r['outcome']}): {why}"[:500],
                                   r["task_id"], {"messages": r["messages"][-4:]})
        return CheckResult(name, "pass", f"oracle passes {len(recs)}/{len(recs)} tasks")

    def _low(self, name: str, policy: Any, limit: float) -> CheckResult:
        recs = _rollouts(self.env, self.tasks, policy, self.cfg.samples, self.cfg.seed)
        err = _first_error(recs)
        if err is not None:
            return CheckResult(name, "fail", f"scripted:{policy.name} caused {err['outcome']}: "
                               f"{(err['error'] or '').strip().splitlines()[-1:]}", err["task_id"],
                               {"messages": err["messages"][-3:]})
        passed = [r for r in recs if r["passed"]]
        rate = len(passed) / len(recs) if recs else 0.0
        if rate > limit:
            return CheckResult(name, "fail", f"scripted:{policy.name} passes {rate:.1%} (limit {limit:.0%})",
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

        for s in self.env.tool_schemas():
            fn = s.get("function", {})
            try:
                Draft202012Validator.check_schema(fn.get("parameters", {}))
            except SchemaError as e:
                return CheckResult(name, "fail", f"tool {fn.get('name')!r}: invalid JSON Schema: {e.message}")
            if not fn.get("description"):
                return CheckResult(name, "fail", f"tool {fn.get('name')!r} has no description (a docstring)")
        return CheckResult(name, "pass", f"{len(self.env.tools)} tool schemas valid")

    def bad_calls(self) -> CheckResult:
        name = "bad_calls"
        if not self.env.tools:
            return CheckResult(name, "skipped", "the environment has no tools")
        task = self.tasks[0]
        probes: list[tuple[str, ToolCall, str | None]] = [
            ("unknown tool", ToolCall("no_such_tool_x", {}), "no_such_tool_x")
        ]
        odd = {"integer": [0, -1, 10**12], "number": [0.0, -1.5, 1e12], "string": ["", "x" * 2000, "'; DROP"],
               "boolean": [True], "array": [[]]}
        for tl in self.env.tools.values():
            params = tl.schema()["function"]["parameters"]
            props, required = params.get("properties", {}), params.get("required", [])
            probes.append(("garbled JSON", ToolCall(tl.name, '{"oops": '), tl.name))
            if required:
                probes.append(("missing argument", ToolCall(tl.name, {}), required[0]))
            for arg, sch in props.items():
                typ = sch.get("type")
                if typ in ("integer", "number"):
                    probes.append(("wrong type", ToolCall(tl.name, {arg: "not a number"}), arg))
                for v in odd.get(typ or "", []):
                    base = {a: odd.get(props[a].get("type") or "", ["x"])[0] for a in required}
                    probes.append(("odd value", ToolCall(tl.name, {**base, arg: v}), None))
        for kind, call, must_mention in probes:
            ep = self.env.reset(task, seed=self.cfg.seed)
            try:
                res = ep.step(Message("assistant", "", [call]))
            except Exception as e:  # noqa: BLE001 - this is what the check looks for
                why = f"{kind}: tool {call.name!r} crashed with {type(e).__name__}: {e}"
                return CheckResult(name, "fail", why[:400], task.id, {"call": call.to_dict()})
            text = res.observation[0].content if res.observation else ""
            if must_mention and (kind != "odd value") and must_mention not in text:
                return CheckResult(name, "fail", f"{kind}: the error does not name {must_mention!r}: {text[:200]!r}",
                                   task.id, {"call": call.to_dict()})
        return CheckResult(name, "pass", f"{len(probes)} bad or odd calls answered without a crash")

    def fork_isolation(self) -> CheckResult:
        name = "fork_isolation"
        pol_a = OraclePolicy() if self.env.has_reference else RandomPolicy()
        pol_b = RandomPolicy()
        for task in self.tasks[: min(5, len(self.tasks))]:
            base_hash = _world_hash(self.env, task)
            solo = _drive([self.env.reset(task, seed=11)], [pol_a])[0]
            a, b = self.env.reset(task, seed=11), self.env.reset(task, seed=22)
            _drive([a, b], [pol_a, pol_b])
            if _world_hash(self.env, task) != base_hash:
                return CheckResult(name, "fail", "a rollout changed the task's initial world", task.id)
            if _state_of(a) != _state_of(solo):
                return CheckResult(name, "fail", "an interleaved rollout saw another rollout's writes", task.id,
                                   {"alone": _state_of(solo)[1][-1:], "interleaved": _state_of(a)[1][-1:]})
        return CheckResult(name, "pass", "interleaved rollouts match solo rollouts; initial worlds untouched")

    def replay(self) -> CheckResult:
        name = "replay"
        pol = OraclePolicy() if self.env.has_reference else RandomPolicy()
        for rec in _rollouts(self.env, self.tasks[: min(10, len(self.tasks))], pol, 1, self.cfg.seed):
            if rec["outcome"] not in ("completed", "truncated"):
                continue
            task = next(t for t in self.tasks if t.id == rec["task_id"])
            ep = self.env.reset(task, seed=rec["seed"])
            for m in rec["messages"][ep.prefix_len:]:
                if m["role"] == "assistant" and not (ep.terminated or ep.truncated):
                    ep.step(Message.from_dict(m))
            replayed = [m.to_dict() for m in ep.messages]
            if replayed != rec["messages"]:
                i = next((j for j, (x, y) in enumerate(zip(replayed, rec["messages"], strict=False)) if x != y),
                         min(len(replayed), len(rec["messages"])))
                return CheckResult(name, "fail", "replaying the actions gave different observations", task.id,
                                   {"turn": i, "stored": rec["messages"][i:i + 1], "replayed": replayed[i:i + 1]})
            score = self.env.grade(ep)
            if score.value != rec["score"]:
                return CheckResult(name, "fail", f"re-grading gave {score.value}, stored {rec['score']}", task.id)
        return CheckResult(name, "pass", "replayed trajectories re-grade to the stored scores")

    def grader_pure(self) -> CheckResult:
        name = "grader_pure"
        pols: list[Any] = [NoopPolicy(), RandomPolicy()] + ([OraclePolicy()] if self.env.has_reference else [])
        for task in self.tasks[: min(10, len(self.tasks))]:
            for pol in pols:
                ep = self.env.reset(task, seed=self.cfg.seed)
                _drive([ep], [pol])
                before = _state_of(ep)
                try:
                    s1 = self.env.grade(ep)
                    s2 = self.env.grade(ep)
                except GraderUndecided:
                    continue
                except Exception as e:  # noqa: BLE001
                    return CheckResult(name, "fail", f"grader crashed on a scripted:{pol.name} episode with "
                                       f"{type(e).__name__}: {e}"[:400], task.id, {"messages": before[1][-2:]})
                if _state_of(ep) != before:
                    return CheckResult(name, "fail", "grading changed the world or the messages", task.id)
                if (s1.value, s1.passed) != (s2.value, s2.passed):
                    return CheckResult(name, "fail", f"grading twice disagreed ({s1.value} then {s2.value})", task.id)
        return CheckResult(name, "pass", "grading is repeatable and read-only")


CHECKS: tuple[str, ...] = ("determinism", "task_ids", "solvable", "noop_low", "random_low", "tool_schemas",
                           "bad_calls", "fork_isolation", "replay", "grader_pure")


def _world_hash(env: Environment, task: Task) -> str | None:
    ep = env.reset(task, seed=0)
    return ep.world_before.hash() if ep.world_before is not None else None


def _state_of(ep: Episode) -> tuple[Any, list[dict[str, Any]]]:
    world = (ep.world.hash(), ep.world_before.hash()) if ep.world is not None and ep.world_before else None
    return world, [m.to_dict() for m in ep.messages]


def _drive(eps: list[Episode], pols: list[Any]) -> list[Episode]:
    """Step several episodes in lock-step, one action each in turn."""

    async def go() -> None:
        live = list(zip(eps, pols, strict=True))
        while live:
            nxt = []
            for ep, pol in live:
                out = await pol.act(ep)
                r = ep.step(out.action)
                if not (r.terminated or r.truncated):
                    nxt.append((ep, pol))
            live = nxt

    asyncio.run(go())
    return eps


def check_env(env: Environment, *, spec: str | None = None, config: CheckConfig | None = None,
              only: Sequence[str] | None = None,
              on_result: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Run the conformance checks; a check that raises is itself reported as a failure."""
    cfg = config or CheckConfig()
    checker = _Checker(env, spec, cfg)
    report = CheckReport(env.name, env.version)
    for name in only or CHECKS:
        try:
            res = getattr(checker, name)()
        except Exception as e:  # noqa: BLE001 - a broken environment must not crash the checker
            res = CheckResult(name, "fail", f"the check raised {type(e).__name__}: {e}"[:500])
        report.results.append(res)
        if on_result is not None:
            on_result(res)
    return report
