"""The environment contract: tasks, tools, a world factory, graders and a reference solution.

``Environment.reset(task, seed=...)`` returns an :class:`Episode`, which follows Gymnasium's
conventions (``step(action)`` returns the observation and separate ``terminated``/``truncated``
flags; everything is deterministic under the seed). Returning an episode instead of mutating the
environment lets one environment serve many concurrent rollouts.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import EnvfoundryError, EnvLoadError, ToolCallError, ToolError
from .grader import FunctionGrader, GradeInput, Grader, combine
from .messages import Action, Message
from .outcome import Score
from .task import Task
from .tools import Tool, make_tool
from .world import World

TaskSourceFn = Callable[[str, int], Sequence[Task]]
WorldFactory = Callable[[Task], World]
ReferenceFn = Callable[["Episode"], Action]
ReplyFn = Callable[["Episode", Action], "list[Message] | None"]
#: ``mutations(task, actions) -> iterable of (name, actions, kind)``, kind "wrong" or "equivalent"
MutationsFn = Callable[[Task, list[Action]], Iterable[tuple[str, list[Action], str]]]


@dataclass(slots=True)
class StepResult:
    """What :meth:`Episode.step` returns: new messages for the agent and the two end flags."""

    observation: list[Message]
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)


class Environment:
    """An RL environment for LLM agents, built by composition (or by subclassing).

    Args:
        name, version, description: identity; ``version`` goes into every task id. Tasks that
            leave their ``env``/``env_version`` out get these; a task naming another environment,
            or another version when ``version`` is given, is refused. Without ``version`` (it is
            then ``"0.1.0"``), tasks that state their own ``env_version`` keep it (older sources).
        tasks: ``tasks(split, seed) -> Sequence[Task]``; must be a pure function of its arguments.
            Tasks may leave ``env`` and ``env_version`` out: the environment fills in its own.
        splits: the split names ``tasks`` accepts; default: ``tasks.splits`` when the source has
            them (:meth:`ProceduralTasks.source`), else ``("train", "test")``.
        tools: functions (or :class:`Tool`) whose first parameter receives the episode.
        world: ``world(task) -> World``, the initial state of a task (optional).
        graders: one or more graders or plain functions ``fn(GradeInput) -> Score``.
        reference: ``reference(episode) -> Action``, the next action of a known-good solution
            (used by ``scripted:oracle`` to prove every task solvable).
        reply: ``reply(episode, action) -> messages | None``, called when the agent answers
            without a tool call; return messages (e.g. a simulated user) to continue, None to end.
        max_turns: agent turns before the episode is truncated.
        answer_format: how a final answer is written, e.g. ``"<answer>{answer}</answer>"``;
            probes (random guessing, format exploits) use it.
        mutations: ``mutations(task, actions) -> iterable of (name, actions, kind)``: domain
            changes of the reference solution's ``actions`` for ``envfoundry audit``; kind
            ``"wrong"`` must lower the score, ``"equivalent"`` must not (optional).
    """

    #: True for an environment whose episodes wait on I/O (a remote server, a browser): the engine
    #: then awaits :meth:`areset`, :meth:`Episode.astep`, :meth:`agrade` and :meth:`Episode.aclose`
    #: instead of calling the synchronous methods, so one slow episode never blocks the others.
    asynchronous: ClassVar[bool] = False

    def __init__(
        self,
        *,
        name: str,
        tasks: TaskSourceFn,
        graders: Grader | Callable[[GradeInput], Score] | Sequence[Any],
        version: str | None = None,
        description: str = "",
        splits: Sequence[str] | None = None,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        world: WorldFactory | None = None,
        reference: ReferenceFn | None = None,
        reply: ReplyFn | None = None,
        max_turns: int = 10,
        answer_format: str | None = None,
        mutations: MutationsFn | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.name = name
        self.version = version if version is not None else "0.1.0"
        self._version_stated = version is not None
        #: (spec, args) when made by :func:`envfoundry.load`; worker processes load it again from these
        self.loaded_from: tuple[str, dict[str, str]] | None = None
        self.description = description
        self.splits = tuple(splits if splits is not None else getattr(tasks, "splits", ("train", "test")))
        self.max_turns = max_turns
        self.answer_format = answer_format
        self.mutations = mutations
        self._tasks = tasks
        self._world = world
        self._reference = reference
        self._reply = reply
        self.tools: dict[str, Tool] = {}
        for t in tools:
            self.add_tool(t)
        gl = list(graders) if isinstance(graders, (list, tuple)) else [graders]
        if not gl:
            raise ValueError("an environment needs at least one grader")
        self.graders: list[tuple[str, float, Grader]] = []
        for g in gl:
            if not isinstance(g, Grader) and callable(g):
                g = FunctionGrader(getattr(g, "__name__", "grader"), g)
            self.graders.append((g.name, float(getattr(g, "weight", 1.0)), g))
        self._schemas: list[dict[str, Any]] | None = None
        self._task_cache: dict[tuple[str, int], Sequence[Task]] = {}
        self._prompt_cache: dict[str, tuple[tuple[Message, ...], tuple[dict[str, Any], ...]]] = {}

    # ------------------------------------------------------------- definition
    def add_tool(self, t: Tool | Callable[..., Any], *, writes: bool = False) -> Tool:
        tl = t if isinstance(t, Tool) else make_tool(t, writes=writes)
        if tl.name in self.tools:
            raise ValueError(f"environment {self.name!r} already has a tool named {tl.name!r}")
        self.tools[tl.name] = tl
        self._schemas = None
        return tl

    def tool(self, fn: Callable[..., Any] | None = None, *, writes: bool = False) -> Any:
        """Decorator registering a tool: ``@env.tool`` or ``@env.tool(writes=True)``."""

        def wrap(f: Callable[..., Any]) -> Tool:
            return self.add_tool(f, writes=writes)

        return wrap(fn) if fn is not None else wrap

    def tool_schemas(self) -> list[dict[str, Any]]:
        if self._schemas is None:
            self._schemas = [t.schema() for t in self.tools.values()]
        return self._schemas

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    def tasks(self, split: str = "test", *, seed: int = 0) -> Sequence[Task]:
        if split not in self.splits:
            raise KeyError(
                f"environment {self.name!r} has no split {split!r} (splits: {', '.join(self.splits)})"
            )
        key = (split, seed)
        if key not in self._task_cache:
            self._task_cache[key] = self._load_tasks(split, seed)
        return self._task_cache[key]

    def _load_tasks(self, split: str, seed: int) -> Sequence[Task]:
        """The task source's answer, or an EnvLoadError (exit 2) saying what it did wrong."""
        where = f"the task source of environment {self.name!r} (split {split!r}, seed {seed})"
        try:
            tasks = self._tasks(split, seed)
            if isinstance(tasks, Iterator):
                tasks = list(tasks)  # a generator
            # a lazy source (a Sequence, or anything with len() and indexing) is kept as it is:
            # only its first task is made (and checked) here
            ok = (hasattr(tasks, "__len__") and hasattr(tasks, "__getitem__")
                  and not isinstance(tasks, (str, bytes, dict)))
            first = tasks[0] if ok and len(tasks) else None
        except EnvfoundryError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's code may raise anything
            raise EnvLoadError(f"{where} raised {type(e).__name__}: {e}") from e
        if not ok:
            raise EnvLoadError(f"{where} returned {type(tasks).__name__}, not a list of Task")
        if first is not None and not isinstance(first, Task):
            raise EnvLoadError(f"{where} returned a list of {type(first).__name__}, not of Task")
        return self._own(tasks, first, where)

    def _own(self, tasks: Sequence[Task], first: Task | None, where: str) -> Sequence[Task]:
        """``tasks`` with this environment's name and version in each (filled in where the source
        left them out; a task of another environment or version is an EnvLoadError)."""
        try:
            if isinstance(tasks, (list, tuple)):
                owned = [t.for_env(self.name, self.version, check_version=self._version_stated) for t in tasks]
                return tasks if all(a is b for a, b in zip(owned, tasks, strict=True)) else owned
            if first is None or first.for_env(self.name, self.version, check_version=self._version_stated) is first:
                return tasks  # a lazy source whose tasks name this environment: kept as it is
        except ValueError as e:
            raise EnvLoadError(f"{where}: {e}") from None
        return _OwnedTasks(tasks, self.name, self.version, self._version_stated, where)

    # ---------------------------------------------------------------- running
    def reset(self, task: Task, *, seed: int) -> Episode:
        """Start an episode of ``task``; the world is a fork, so episodes never share writes."""
        before = self._world(task) if self._world is not None else None
        return Episode(self, task, seed, before)

    async def areset(self, task: Task, *, seed: int) -> Episode:
        """:meth:`reset` for the engine of an :attr:`asynchronous` environment (override it there)."""
        return self.reset(task, seed=seed)

    async def agrade(self, ep: Episode) -> Score:
        """:meth:`grade` for the engine of an :attr:`asynchronous` environment (override it there)."""
        return self.grade(ep)

    def prompt_messages(self, task: Task) -> tuple[Message, ...]:
        """The messages an episode of ``task`` starts with: system, worked examples, prompt.

        Cached per task: every rollout of a group shares the same (never mutated) objects.
        """
        hit = self._prompt_cache.get(task.id)
        if hit is None:
            msgs: list[Message] = []
            if task.system:
                msgs.append(Message("system", task.system))
            for q, a in task.examples:
                msgs.append(Message("user", q))
                msgs.append(Message("assistant", a))
            msgs.append(Message("user", task.prompt))
            hit = (tuple(msgs), tuple(m.to_dict() for m in msgs))
            if len(self._prompt_cache) > 100_000:
                self._prompt_cache.clear()
            self._prompt_cache[task.id] = hit
        return hit[0]

    def prompt_dicts(self, task: Task) -> tuple[dict[str, Any], ...]:
        """:meth:`prompt_messages` as plain dicts (for records)."""
        self.prompt_messages(task)
        return self._prompt_cache[task.id][1]

    def reference_action(self, ep: Episode) -> Action:
        if self._reference is None:
            raise NotImplementedError(f"environment {self.name!r} has no reference solution")
        return self._reference(ep)

    def grade(self, ep: Episode) -> Score:
        g = GradeInput.from_episode(ep)
        return combine([(n, w, gr.grade(g)) for n, w, gr in self.graders])

    def __repr__(self) -> str:
        return f"Environment({self.name!r}, version={self.version!r}, tools={list(self.tools)})"


class Episode:
    """One rollout's state: messages so far, the task, a seeded RNG and a private world fork."""

    __slots__ = (
        "env", "task", "seed", "_rng", "world_before", "world", "messages", "turns",
        "terminated", "truncated", "state", "tool_calls", "prefix_len",
    )

    def __init__(self, env: Environment, task: Task, seed: int, world: World | None) -> None:
        self.env = env
        self.task = task
        self.seed = seed
        self._rng: random.Random | None = None
        self.world_before = world
        self.world = world.fork() if world is not None else None
        prefix = env.prompt_messages(task)
        self.messages: list[Message] = list(prefix)
        #: how many leading messages are the task's prompt (shared, never mutated)
        self.prefix_len = len(prefix)
        self.turns = 0
        self.terminated = False
        self.truncated = False
        self.tool_calls = 0
        #: scratch space for the environment's own per-episode state
        self.state: dict[str, Any] = {}

    @property
    def rng(self) -> random.Random:
        """A ``random.Random`` seeded with the episode seed (made on first use)."""
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    @property
    def observation(self) -> list[Message]:
        """The messages the agent sees (the whole conversation so far)."""
        return self.messages

    def finish(self) -> None:
        """End the episode (e.g. from a ``submit`` tool)."""
        self.terminated = True

    async def astep(self, action: Action) -> StepResult:
        """:meth:`step` for an :attr:`Environment.asynchronous` environment's episodes (override it there)."""
        return self.step(action)

    async def aclose(self) -> None:
        """Free what the episode holds (a remote session, a browser page); the engine awaits it once,
        after grading or after an error. Nothing to free for an in-process episode."""

    def world_diff_dicts(self) -> list[dict[str, Any]] | None:
        """The field-level change of the world as plain dicts (what a record stores); None
        without a world. A remote episode returns what its server computed."""
        if self.world is None or self.world_before is None:
            return None
        return [c.to_dict() for c in self.world_before.diff(self.world)]

    def begin_step(self, action: Action) -> Action:
        """The bookkeeping every step starts with (for an episode class whose step runs elsewhere, e.g.
        in a browser): refuse a finished episode, record ``action`` as the assistant's, count the turn."""
        if self.terminated or self.truncated:
            raise RuntimeError("step() called on a finished episode; call env.reset() first")
        if action.role != "assistant":
            action = Message("assistant", action.content, action.tool_calls)
        self.messages.append(action)
        self.turns += 1
        return action

    def end_step(self, obs: list[Message], info: dict[str, Any] | None = None) -> StepResult:
        """The bookkeeping every step ends with: record the observation, truncate at the turn limit."""
        self.messages.extend(obs)
        if not self.terminated and self.turns >= self.env.max_turns:
            self.truncated = True
        return StepResult(obs, self.terminated, self.truncated, info if info is not None else {})

    def step(self, action: Action) -> StepResult:
        action = self.begin_step(action)
        obs: list[Message] = []
        if action.tool_calls:
            for i, call in enumerate(action.tool_calls):
                if not call.id:
                    call.id = f"call_{self.turns}_{i}"
                obs.append(
                    Message("tool", self._call(call.name, call.arguments),
                            tool_call_id=call.id, name=call.name)
                )
        elif self.env._reply is not None:
            more = self.env._reply(self, action)
            if more:
                obs.extend(more)
            else:
                self.terminated = True
        else:
            self.terminated = True
        return self.end_step(obs)

    def _call(self, name: str, arguments: str | dict[str, Any]) -> str:
        self.tool_calls += 1
        tl = self.env.tools.get(name)
        try:
            if tl is None:
                known = ", ".join(self.env.tools) or "none"
                raise ToolCallError(f"unknown tool '{name}' (tools: {known})")
            kwargs = tl.parse_args(arguments)
            result = tl.fn(self, **kwargs)
        except ToolError as e:
            return f"error: {e}"
        return result if isinstance(result, str) else _to_json(result)


class _OwnedTasks(Sequence[Task]):
    """A lazy task source's tasks with the environment's name and version filled in, one at a time."""

    def __init__(self, tasks: Sequence[Task], name: str, version: str, check_version: bool, where: str) -> None:
        self._tasks, self._name, self._version, self._where = tasks, name, version, where
        self._check = check_version
        self._made: dict[int, Task] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        hit = self._made.get(i)
        if hit is None:
            try:
                hit = self._tasks[i].for_env(self._name, self._version, check_version=self._check)
            except ValueError as e:
                raise EnvLoadError(f"{self._where}: {e}") from None
            if len(self._made) > 100_000:
                self._made.clear()
            self._made[i] = hit
        return hit

    def __iter__(self) -> Iterator[Task]:
        for i in range(len(self)):
            yield self[i]


def _to_json(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, default=str)


def format_exception(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def exception_line(e: BaseException) -> str:
    """``KeyError: 'x' (at file.py:31 in fn)``: the exception and the innermost line that raised it."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = ""
    if tb is not None:
        code = tb.tb_frame.f_code
        where = f" (at {code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name})"
    return f"{type(e).__name__}: {e}{where}"
