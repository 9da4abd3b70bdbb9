"""Loading a declarative folder into an :class:`envfoundry.Environment`.

Everything is read and checked before anything runs: the files' shape (:mod:`.models`), tables and
data files (:mod:`.tables`), every expression's names, functions, tables and columns
(:mod:`.expr`), tools (:mod:`.tools`), policy rules, task types and the reference solution; the
written tasks are made, and one task of every generated type is made from a fixed seed, so that a
generator that cannot satisfy its constraints is found at load time. Any problem is a
:class:`~.errors.DeclarativeError` (exit code 2) naming the file and line. Loading writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.env import Environment, Episode
from ..core.errors import EnvLoadError
from ..core.messages import Message, ToolCall
from ..core.seeding import derive_seed
from ..core.tools import Tool
from .context import Scope
from .errors import DeclarativeError, Loc
from .generator import check_new_name, compile_steps
from .grading import DeclarativeGrader, compile_rule, rule_scope
from .models import EnvironmentFile
from .source import LDict, LList, inside, read_bytes, read_csv, read_yaml
from .tables import load_data, make_tables
from .task_models import RubricFile, TaskEntry, TasksFile
from .tasks import CompiledType, Generator, Kit, Source, Written
from .tools import ToolBuilder
from .validation import validate
from .values import compile_template, compile_value, plain

ENV_FILE = "environment.yaml"
TASK_FILES = ("tasks.yaml", "tasks.yml")
RUBRIC_FILE = "rubric.yaml"
ARGS = ("judge", "judge_samples", "base_url", "api_key_env")


def _reference(ep: Episode) -> Message:
    """The next action of the task's declared solution (``scripted:oracle``)."""
    steps = ep.task.data["solution"]
    step = steps[min(ep.turns, len(steps) - 1)]
    if "tool" in step:
        import copy

        return Message("assistant", "", [ToolCall(step["tool"], copy.deepcopy(step["args"]))])
    return Message("assistant", step["text"])


def _constants(env: EnvironmentFile) -> dict[str, Any]:
    raw = env.raw("constants")
    out = {}
    for k, v in env.constants.items():
        loc = raw.at(k) if isinstance(raw, LDict) else env.at("constants")
        check_new_name(k, loc, Scope({}, {t: frozenset() for t in env.tables}), "constant")
        val = compile_value(v, loc, Scope({}, {}, world=False))
        if not val.static:
            raise DeclarativeError(loc, f"constant {k!r} is a value, not an expression")
        out[k] = plain(val.literal)
    return out


def _tasks_doc(folder: Path) -> tuple[Any, str]:
    for name in TASK_FILES:
        if (folder / name).is_file():
            return read_yaml(folder / name, name), name
    raise DeclarativeError(Loc(str(folder)), f"the folder has no {TASK_FILES[0]} (the task types and tasks)")


def _csv_entries(folder: Path, rel: str, loc: Loc) -> tuple[list[TaskEntry], LList]:
    """Written tasks from a CSV file: columns ``type``, ``split``, ``seed``, ``world`` and one per parameter."""
    path = inside(folder, rel, loc)
    if not path.is_file():
        raise DeclarativeError(loc, f"task file {rel!r} does not exist")
    header, rows = read_csv(path, rel)
    if "type" not in header:
        raise DeclarativeError(Loc(rel, 1), "a task CSV needs a `type` column")
    entries, raws = [], LList()
    raws.loc, raws.lines = Loc(rel, 1), []
    for line, cells in rows:
        params = LDict({k: v for k, v in cells.items() if k not in ("type", "split", "seed", "world") and v != ""})
        params.loc, params.lines = Loc(rel, line), {k: line for k in params}
        params.from_csv = True  # type: ignore[attr-defined]
        one = LDict({"type": cells["type"], "params": params})
        one.loc, one.lines = Loc(rel, line), {"type": line, "params": line}
        try:
            seed = int(cells["seed"]) if cells.get("seed", "").strip() else None
        except ValueError:
            raise DeclarativeError(Loc(rel, line),
                                   f"field 'seed' expects a whole number, got {cells['seed']!r}") from None
        world = cells.get("world", "").strip() or None
        if world not in (None, "data", "generate"):
            raise DeclarativeError(Loc(rel, line), f"field 'world' expects 'data' or 'generate', got {world!r}")
        entries.append(TaskEntry(type=cells["type"], split=cells.get("split", "").strip() or "test", params=params,
                                 seed=seed, world=world))
        raws.append(one)
        raws.lines.append(line)
    return entries, raws


def load_folder(folder: str | Path, args: Mapping[str, Any] | None = None) -> Environment:
    """The environment a declarative folder describes (``environment.yaml``, ``tasks.yaml``, data
    files, ``policy.md``, optional ``rubric.yaml``). ``args``: ``judge`` (a model spec for the
    rubric), ``judge_samples``, ``base_url``, ``api_key_env``."""
    folder = Path(folder)
    args = dict(args or {})
    unknown = [k for k in args if k not in ARGS]
    if unknown:
        raise EnvLoadError(f"a declarative environment takes the arguments {', '.join(ARGS)}; got "
                           f"{', '.join(map(repr, unknown))}")
    if not folder.is_dir():
        raise EnvLoadError(f"{str(folder)!r} is not a folder")
    if not (folder / ENV_FILE).is_file():
        raise EnvLoadError(f"folder {str(folder)!r} has no {ENV_FILE}")
    env_doc = read_yaml(folder / ENV_FILE, ENV_FILE)
    spec: EnvironmentFile = validate(EnvironmentFile, env_doc, ENV_FILE)
    tasks_doc, tasks_file = _tasks_doc(folder)
    tspec: TasksFile = validate(TasksFile, tasks_doc, tasks_file)

    tables = make_tables(spec.tables, spec.raw("tables"))
    data = load_data(folder, tables)
    constants = _constants(spec)
    if spec.answer_format is not None and "{answer}" not in spec.answer_format:
        raise DeclarativeError(spec.at("answer_format"), "answer_format must hold {answer}, e.g. "
                               "<answer>{answer}</answer>")

    builder = ToolBuilder(tables, constants, max_tool_calls=spec.limits.max_tool_calls,
                          max_result_chars=spec.limits.max_result_chars)
    tools: dict[str, Tool] = {}
    traw = spec.raw("tools")
    for name, ts in spec.tools.items():
        tools[name] = builder.build(name, ts, traw.at(name) if isinstance(traw, LDict) else ts.at())
    rules = {}
    if spec.policy is not None:
        pol = spec.policy
        if pol.file is not None:
            ppath = inside(folder, pol.file, pol.at("file"))
            if not ppath.is_file():
                raise DeclarativeError(pol.at("file"), f"the policy file {pol.file!r} does not exist")
            text = read_bytes(ppath, pol.file)
            if pol.tool is not None:
                if pol.tool in tools:
                    raise DeclarativeError(pol.at("tool"), f"the policy tool {pol.tool!r} has the name of a tool")
                tools[pol.tool] = builder.policy_tool(pol.tool, text, pol.description, pol.at("tool"))
        elif pol.tool is not None and "tool" in pol.model_fields_set:
            raise DeclarativeError(pol.at("tool"), "a policy tool needs the policy's `file`")
        rscope = rule_scope(constants, {t.name: frozenset(t.columns) for t in tables.values()}, "")
        rraw = pol.raw("rules")
        for i, r in enumerate(pol.rules):
            if r.id in rules:
                raise DeclarativeError(rraw.at(i) if isinstance(rraw, LList) else pol.at("rules"),
                                       f"two rules are called {r.id!r}")
            one = rraw[i] if isinstance(rraw, LList) else None
            rules[r.id] = compile_rule(r, one, rraw.at(i) if isinstance(rraw, LList) else pol.at("rules"), rscope,
                                       tools)

    # the generator, then every task type in a scope that continues the generator's
    tscope = {t.name: frozenset(t.columns) for t in tables.values()}
    base = Scope({k: None for k in constants}, tscope, random=True, world=True)
    gen = Generator()
    if spec.generator is not None:
        g = spec.generator
        graw = spec.raw("generator")
        gen = Generator(compile_steps(g.steps, graw.get("steps") if isinstance(graw, LDict) else None, base, tables),
                        [], g.max_attempts, True)
        fin_scope = base.with_names({})
        gen.finish = compile_steps(g.finish, graw.get("finish") if isinstance(graw, LDict) else None, fin_scope,
                                   tables)
        finish_names = {k: v for k, v in fin_scope.names.items() if k not in base.names}
    else:
        finish_names = {}
    system = compile_template(spec.system, spec.at("system"), base.with_names({})) if spec.system else None
    kit = Kit(tables, data, constants, tools, list(rules), spec.answer_format, system, gen, spec.limits.max_turns)
    types: dict[str, CompiledType] = {}
    yraw = tspec.raw("types")
    for name, tt in tspec.types.items():
        loc = yraw.at(name) if isinstance(yraw, LDict) else tspec.at("types")
        check_new_name(name, loc, Scope({}, {}), "task type")
        scope = base.with_names(finish_names)
        types[name] = CompiledType(name, tt, yraw.get(name) if isinstance(yraw, LDict) else None, loc, kit, scope)

    written = None
    if tspec.tasks is not None:
        if isinstance(tspec.tasks, str):
            entries, eraw = _csv_entries(folder, tspec.tasks, tspec.at("tasks"))
            written = Written(entries, eraw, types, gen.present, tspec.tasks)
        else:
            written = Written(tspec.tasks, tspec.raw("tasks"), types, gen.present, tasks_file)
    sizes = weights = None
    if tspec.procedural is not None:
        if not gen.present and not any(t.spec.generate for t in types.values()):
            raise DeclarativeError(tspec.at("procedural"), "procedural tasks need a `generator:` in environment.yaml "
                                   "or `generate:` steps in their task types")
        sizes, weights = tspec.procedural.sizes, tspec.procedural.split_weights
        for t in types.values():  # one trial task per type: a generator that cannot work fails now
            if t.weight > 0:
                t.make("trial", derive_seed("trial", t.name), {}, generate=gen.present)
    if written is None and sizes is None:
        raise DeclarativeError(Loc(tasks_file, 1), "no tasks: write `tasks:` (a list or a CSV file) and/or "
                               "`procedural:` (generated tasks)")
    try:
        source = Source(written, types, sizes, weights)
    except ValueError as e:
        raise DeclarativeError(tspec.at("procedural"), str(e)) from None
    if not source.splits:
        raise DeclarativeError(Loc(tasks_file, 1), "no tasks in any split")

    graders: list[Any] = [DeclarativeGrader(rules, tools, constants, spec.answer_format)]
    rubric = _rubric(folder, spec, args)
    if rubric is not None:
        graders.append(rubric)
    return Environment(
        name=spec.name, version=spec.version, description=spec.description, tasks=source, splits=source.splits,
        tools=list(tools.values()), world=_world_factory(), graders=graders, reference=_reference,
        max_turns=spec.limits.max_turns, answer_format=spec.answer_format,
    )


def _world_factory() -> Any:
    from ..core.world import World

    cache: dict[str, World] = {}

    def world(task: Any) -> World:
        hit = cache.get(task.id)
        if hit is None:
            if len(cache) > 512:
                cache.clear()
            hit = cache[task.id] = World((task.world or {}).get("tables", {}))
        return hit.fork()
    return world


def _rubric(folder: Path, spec: EnvironmentFile, args: Mapping[str, Any]) -> Any:
    path = folder / RUBRIC_FILE
    rub = validate(RubricFile, read_yaml(path, RUBRIC_FILE), RUBRIC_FILE) if path.is_file() else None
    judge = args.get("judge")
    if not judge or str(judge).lower() == "none":
        return None
    if rub is None:
        raise EnvLoadError(f"--env-arg judge={judge} needs a {RUBRIC_FILE} in the folder")
    from ..grading.rubric import Rubric, RubricGrader, RubricItem

    rubric = Rubric(tuple(RubricItem(i.id, i.question, i.weight, i.critical) for i in rub.items), task=rub.task,
                    pass_threshold=rub.pass_threshold)
    policy = ""
    if spec.policy is not None and spec.policy.file is not None:
        policy = read_bytes(inside(folder, spec.policy.file, spec.policy.at("file")), spec.policy.file)
    try:
        samples = int(args.get("judge_samples") or 1)
    except ValueError:
        raise EnvLoadError(f"judge_samples must be a whole number, got {args.get('judge_samples')!r}") from None
    return RubricGrader(rubric, judge=str(judge), base_url=args.get("base_url"), api_key_env=args.get("api_key_env"),
                        samples=samples, context=policy, name="rubric", weight=rub.weight)


__all__ = ["ENV_FILE", "load_folder"]
