"""Task types and the tasks made from them: written ones (``tasks:``) and generated ones (``procedural:``).

Making a task: bind the given parameters, then run the steps (for a generated world: the
environment's generator ``steps``, the type's ``generate`` steps, the generator's ``finish`` steps;
always the type's ``derive`` steps), trying again from the next seed when a ``require`` fails;
then evaluate the prompt, the expected outcome, answer and solution into the task's private data.
A generated task is a pure function of its problem seed, drawn from the split's seeded stream
(:class:`~envfoundry.ProceduralTasks`), so tasks are reproducible in any process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.procedural import ProceduralTasks
from ..core.seeding import derive_seed
from ..core.task import Task
from ..core.tools import Tool
from .context import Ctx, Scope, suggest
from .errors import DeclarativeError, ExprError, Loc, Unsatisfied
from .generator import GenState, Run, check_new_name, run_steps
from .generator import compile_steps as _compile_steps
from .outcomes import compile_answer, compile_expect, compile_solution
from .source import LDict, LList
from .tables import Column, Table, TypeMismatch, check_refs, column_of
from .task_models import TaskEntry, TaskType
from .values import Template, Value, compile_template, compile_value, plain
from .worlds import DictWorld


def _line(raw: Any, key: str | int, default: Loc) -> Loc:
    if isinstance(raw, LDict) and isinstance(key, str) and key in raw.lines:
        return raw.at(key)
    if isinstance(raw, LList) and isinstance(key, int) and 0 <= key < len(raw):
        return raw.at(key)
    return default


@dataclass
class Generator:
    """The environment's compiled generator (or none): its steps, finish steps and attempts."""

    steps: list[Run] = field(default_factory=list)
    finish: list[Run] = field(default_factory=list)
    max_attempts: int = 1
    present: bool = False


@dataclass
class Kit:
    """What every task type is compiled and made with."""

    tables: dict[str, Table]
    data: dict[str, dict[str, dict[str, Any]]]
    constants: dict[str, Any]
    tools: dict[str, Tool]
    rule_ids: list[str]
    answer_format: str | None
    system: Template | None
    generator: Generator
    max_turns: int


class CompiledType:
    """A task type, compiled: :meth:`make` makes one task."""

    def __init__(self, name: str, spec: TaskType, raw: Any, loc: Loc, kit: Kit, scope: Scope) -> None:
        self.name, self.spec, self.loc, self.kit = name, spec, loc, kit
        self.weight = spec.weight
        praw = spec.raw("params")
        self.params: dict[str, Column] = {}
        for p, ps in spec.params.items():
            ploc = _line(praw, p, spec.at("params"))
            check_new_name(p, ploc, scope, "parameter")
            self.params[p] = column_of(p, ps, ploc)
            scope.names[p] = None
        self.generate = _compile_steps(spec.generate, spec.raw("generate"), scope, kit.tables)
        self.derive = _compile_steps(spec.derive, spec.raw("derive"), scope, kit.tables)
        self.prompt = compile_template(spec.prompt, spec.at("prompt"), scope)
        self.system = compile_template(spec.system, spec.at("system"), scope) if spec.system else kit.system
        self.expect = compile_expect(spec.expect, spec.raw("expect"), spec.at("expect"), scope, kit.tables)
        self.answer = (compile_answer(spec.answer, spec.raw("answer"), spec.at("answer"), scope)
                       if spec.answer is not None else None)
        if spec.answer is not None and not any(hasattr(s, "answer") for s in spec.solution) and spec.solution:
            raise DeclarativeError(spec.at("solution"), f"task type {name!r} expects an answer, so its solution "
                                   "ends with an `answer:` step")
        self.solution = compile_solution(spec.solution, spec.raw("solution"), spec.at("solution"), scope, kit.tools,
                                         kit.answer_format)
        if not spec.solution:
            raise DeclarativeError(loc, f"task type {name!r} has no solution: write the reference solution's "
                                   "calls (`solution:`), so that every task is known to be solvable")
        rraw = spec.raw("rules")
        for i, r in enumerate(spec.rules or []):
            if r not in kit.rule_ids:
                raise DeclarativeError(_line(rraw, i, spec.at("rules")), f"unknown rule {r!r} (the policy's rules: "
                                       f"{', '.join(kit.rule_ids) or 'none'})")
        self.rules = list(spec.rules) if spec.rules is not None else list(kit.rule_ids)
        mraw = spec.raw("metadata")
        self.metadata: list[tuple[str, Value]] = [
            (k, compile_value(v, _line(mraw, k, spec.at("metadata")), scope)) for k, v in spec.metadata.items()]

    # ------------------------------------------------------------ making a task
    def check_params(self, given: Mapping[str, Any], raw: Any, loc: Loc) -> dict[str, Any]:
        """The written parameters, each checked against its type (``tasks.yaml:42: field 'amount'
        expects a number, got 'ten'``)."""
        out = {}
        for p, v in given.items():
            col = self.params.get(p)
            ploc = _line(raw, p, loc)
            if col is None:
                raise DeclarativeError(ploc, f"task type {self.name!r} has no parameter {p!r}"
                                       f"{suggest(p, self.params)} (parameters: {', '.join(self.params) or 'none'})")
            try:
                out[p] = col.coerce(v, text=isinstance(v, str) and getattr(raw, "from_csv", False))
            except TypeMismatch as e:
                raise DeclarativeError(ploc, f"field {p!r} {e}") from None
        for p, col in self.params.items():
            if p not in out and not col.required:
                out[p] = col.coerce(None)
            elif p not in out and not self.spec.generate and not self.spec.derive:
                raise DeclarativeError(loc, f"task type {self.name!r} needs parameter {p!r} ({col.describe()})")
        return out

    def make(self, split: str, seed: int, given: Mapping[str, Any], *, generate: bool) -> Task:
        kit = self.kit
        gen = kit.generator
        attempts = gen.max_attempts if (generate and gen.present) or self.spec.generate or self.spec.derive else 1
        last: Unsatisfied | None = None
        for attempt in range(attempts):
            rng = random.Random(derive_seed(seed, "attempt", attempt))
            world = DictWorld(kit.tables, kit.data)
            ctx = Ctx({**kit.constants, **given}, world, rng)
            state = GenState(ctx, world, set(given))
            try:
                if generate:
                    run_steps(gen.steps, state)
                run_steps(self.generate, state)
                if generate:
                    run_steps(gen.finish, state)
                run_steps(self.derive, state)
            except Unsatisfied as u:
                last = u
                continue
            return self._task(split, ctx, world)
        assert last is not None
        why = f" ({last.message})" if last.message else ""
        raise DeclarativeError(last.loc, f"the generator cannot satisfy `{last.condition}`{why}: it failed in all "
                               f"{attempts} attempts (task type {self.name!r}, seed {seed}); widen the "
                               "distributions or relax the constraint")

    def _task(self, split: str, ctx: Ctx, world: DictWorld) -> Task:
        ctx.rng = None
        params = {}
        for p, col in self.params.items():
            if p not in ctx.vars:
                raise DeclarativeError(self.spec.at("params"), f"task type {self.name!r}: parameter {p!r} has no "
                                       "value: give it in the task, or set it with a `let` step")
            try:
                params[p] = col.coerce(ctx.vars[p])
            except TypeMismatch as e:
                raise DeclarativeError(self.spec.at("params"),
                                       f"task type {self.name!r}: parameter {p!r} {e}") from None
        tables = world.snapshot()
        check_refs(self.kit.tables, tables, lambda t, k: self.loc)
        try:
            prompt = self.prompt(ctx)
            system = self.system(ctx) if self.system is not None else None
            data = {
                "type": self.name,
                "params": plain(params),
                "expect": self.expect(ctx),
                "answer": self.answer(ctx) if self.answer is not None else None,
                "solution": self.solution(ctx),
                "rules": list(self.rules),
            }
            meta = {"type": self.name, **{k: plain(v(ctx)) for k, v in self.metadata}}
        except ExprError as e:
            raise DeclarativeError(e.loc or self.loc, f"`{e.src}`: {e.detail}" if e.src else e.detail) from None
        turns = len(data["solution"])
        if turns > self.kit.max_turns:
            raise DeclarativeError(self.spec.at("solution"), f"task type {self.name!r}: the solution takes {turns} "
                                   f"turns, more than limits.max_turns ({self.kit.max_turns})")
        return Task(split=split, prompt=prompt, system=system or None, data=data, world={"tables": tables},
                    metadata=meta)


# ------------------------------------------------------------------ task sources
class Written:
    """The written tasks, made when the folder is loaded (so every problem is found then)."""

    def __init__(self, entries: Sequence[TaskEntry], raw: Any, types: Mapping[str, CompiledType],
                 default_generate: bool, file: str) -> None:
        self.by_split: dict[str, list[Task]] = {}
        seen: dict[str, Loc] = {}
        for i, e in enumerate(entries):
            one = raw[i] if isinstance(raw, LList) else None
            loc = _line(raw, i, Loc(file))
            t = types.get(e.type)
            if t is None:
                raise DeclarativeError(_line(one, "type", loc), f"unknown task type {e.type!r}"
                                       f"{suggest(e.type, types)} (types: {', '.join(types)})")
            given = t.check_params(e.params, one.get("params") if isinstance(one, LDict) else None,
                                   _line(one, "params", loc))
            generate = default_generate if e.world is None else e.world == "generate"
            if generate and not t.kit.generator.present:
                raise DeclarativeError(_line(one, "world", loc), "world: generate needs a `generator:` section in "
                                       "environment.yaml")
            seed = e.seed if e.seed is not None else derive_seed("written", file, i)
            try:
                task = t.make(e.split, seed, given, generate=generate)
            except DeclarativeError as err:
                raise DeclarativeError(err.loc, f"{err.detail} (while making the task at {loc})") from None
            if task.id in seen:
                raise DeclarativeError(loc, f"this task is the same as the one at {seen[task.id]} (same type, "
                                       "parameters, split and world)")
            seen[task.id] = loc
            self.by_split.setdefault(e.split, []).append(task)


class Chained(Sequence[Task]):
    """Written tasks first, then generated ones (lazily)."""

    def __init__(self, first: Sequence[Task], rest: Sequence[Task]) -> None:
        self.first, self.rest = first, rest

    def __len__(self) -> int:
        return len(self.first) + len(self.rest)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.first[i] if i < len(self.first) else self.rest[i - len(self.first)]

    def __iter__(self) -> Iterator[Task]:
        for i in range(len(self)):
            yield self[i]


class Source:
    """``tasks(split, seed)`` of a declarative environment, with its ``splits``."""

    def __init__(self, written: Written | None, types: Mapping[str, CompiledType], sizes: Mapping[str, int] | None,
                 weights: Mapping[str, int] | None) -> None:
        self.written = written
        self.types = [t for t in types.values() if t.weight > 0]
        self.procedural = None
        if sizes:
            if not self.types:
                raise DeclarativeError(None, "procedural tasks need a task type with weight > 0")
            self.procedural = ProceduralTasks.source(self._generate, sizes=sizes, weights=weights)
        splits = list(sizes or {})
        for s in (written.by_split if written else {}):
            if s not in splits:
                splits.append(s)
        self.splits = tuple(splits)

    def _generate(self, rng: random.Random) -> tuple[str, Any]:
        t = rng.choices(self.types, weights=[x.weight for x in self.types], k=1)[0]
        problem = rng.getrandbits(63)
        return f"{t.name}:{problem}", lambda split: t.make(split, problem, {}, generate=True)

    def __call__(self, split: str, seed: int) -> Sequence[Task]:
        first = self.written.by_split.get(split, []) if self.written else []
        if self.procedural is None or split not in self.procedural.sizes:
            return list(first)
        rest = self.procedural(split, seed)
        return rest if not first else Chained(first, rest)


__all__ = ["Chained", "CompiledType", "Generator", "Kit", "Source", "Written"]
