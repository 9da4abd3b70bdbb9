"""Exploit probes: scripted policies that try to collect reward without doing the task.

A probe is a small class implementing the :class:`~envfoundry.core.policy.Policy` protocol
(``name``, ``act``, ``describe`` with spec ``probe:NAME``, ``start``/``close``). Defining a
subclass of :class:`Probe` with a ``name`` registers it in :data:`PROBES`: adding a probe is one
class. Probes draw their choices from ``rng_for(ep.seed, "probe", name)``, a stream hashed from the
episode seed, so they are reproducible by seed, can recompute their plan at every turn and never
shift the environment's own ``ep.rng`` stream.

*Strict* probes write answers that cannot be right by coincidence (empty text, refusals, claims,
instructions to a judge, filler, odd bytes, the right answer in a wrong format): one pass is a
finding. The other probes (echoes, answer spam, guessing, leaks, tool abuse) may contain the right
answer by chance, so they are findings only when they clearly beat the noop baseline
(see :mod:`envfoundry.quality.audit`).

Text probes live in :mod:`.probes_text`, tool probes in :mod:`.probes_tools`. Probes that must
know the right answer (``format``, ``leak``) drive the reference solution on a private copy of the
task (:func:`record_reference`); that privileged look is for building the probe, never a way to
solve the task: ``format`` only ever submits the answer in a wrong form, ``leak`` submits only what
it found in the observations the agent sees.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..core.env import Environment, Episode
from ..core.messages import Message
from ..core.outcome import Score
from ..core.policy import PolicyOutput
from ..core.seeding import derive_seed, rng_for
from ..core.task import Task
from ..core.tools import Tool

#: name -> probe class; filled by defining subclasses of :class:`Probe`
PROBES: dict[str, type[Probe]] = {}


class Probe:
    """Base class of the exploit probes (a Policy). Subclasses set ``name`` and write ``act``.

    ``strict``: a single pass is a finding (the probe's answers cannot be right by chance).
    ``applies(env)`` returns why the probe does not fit the environment (it is then skipped).
    ``prepare(env, tasks, others, seed)`` runs before the rollouts; ``tasks`` are the audited
    selection, ``others`` tasks of the same split outside it (e.g. to draw guesses from).
    """

    name: ClassVar[str] = ""
    strict: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name:
            if name in PROBES and PROBES[name] is not cls:
                raise ValueError(f"a probe named {name!r} is already registered ({PROBES[name].__qualname__})")
            PROBES[name] = cls

    def __init__(self) -> None:
        self._refs: dict[tuple[str, int], Reference] = {}

    @classmethod
    def summary(cls) -> str:
        """The first line of the probe's docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def applies(self, env: Environment) -> str | None:
        return None

    def prepare(self, env: Environment, tasks: Sequence[Task], others: Sequence[Task], seed: int) -> None:
        return None

    async def act(self, ep: Episode) -> PolicyOutput:
        raise NotImplementedError

    def rng(self, ep: Episode) -> random.Random:
        """A fresh stream per call, the same at every turn of one episode."""
        return rng_for(ep.seed, "probe", self.name)

    def reference(self, ep: Episode) -> Reference | None:
        """The reference solution of this episode's task (privileged; cached), None without one."""
        if not ep.env.has_reference:
            return None
        key = (ep.task.id, ep.seed)
        if key not in self._refs:
            if len(self._refs) > 256:
                self._refs.clear()
            self._refs[key] = record_reference(ep.env, ep.task, seed=ep.seed)
        return self._refs[key]

    def describe(self) -> dict[str, Any]:
        return {"spec": f"probe:{self.name}", "strict": self.strict}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def say(self, text: str, **info: Any) -> PolicyOutput:
        return PolicyOutput(Message("assistant", text), info={"probe": self.name, **info})


class TextProbe(Probe):
    """A probe that answers with one text, chosen among ``variants(ep)`` by the probe's stream."""

    def variants(self, ep: Episode) -> list[str]:
        raise NotImplementedError

    async def act(self, ep: Episode) -> PolicyOutput:
        options = self.variants(ep)
        i = self.rng(ep).randrange(len(options)) if options else 0
        return self.say(options[i] if options else "", variant=i)


def probe_classes() -> dict[str, type[Probe]]:
    """Every registered probe, in a stable order (imports the built-in probe modules)."""
    from . import probes_text, probes_tools  # noqa: F401 - defining the classes registers them

    return dict(PROBES)


def make_probe(name: str) -> Probe:
    classes = probe_classes()
    if name not in classes:
        raise KeyError(f"unknown probe {name!r} (probes: {', '.join(classes)})")
    return classes[name]()


# ------------------------------------------------------------------ the reference solution
@dataclass
class Reference:
    """What the reference solution did on one task: its actions, final text and score."""

    task: Task
    seed: int
    actions: list[Message]
    final: str
    answer: str | None  # the text in the answer slot of ``final`` (None when there is none)
    score: Score | None
    error: str | None
    episode: Episode | None


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
    """The distinct reference answers of ``tasks`` (empty without a reference solution)."""
    if not env.has_reference:
        return []
    out: dict[str, None] = {}
    for t in tasks:
        ref = record_reference(env, t, seed=derive_seed(seed, t.id, "reference"))
        if ref.answer:
            out[ref.answer] = None
    return list(out)


# ------------------------------------------------------------------ answer format helpers
def answer_parts(env: Environment) -> tuple[str, str] | None:
    """(prefix, suffix) around ``{answer}`` in the environment's ``answer_format``, if it has one."""
    fmt = getattr(env, "answer_format", None)
    if not fmt or "{answer}" not in fmt:
        return None
    prefix, suffix = fmt.split("{answer}", 1)
    return (prefix, suffix) if prefix or suffix else None


def wrap(env: Environment, value: str) -> str:
    """``value`` written in the environment's answer format (unchanged without one)."""
    parts = answer_parts(env)
    return f"{parts[0]}{value}{parts[1]}" if parts else value


def answer_span(env: Environment, text: str) -> tuple[int, int] | None:
    """Where the answer sits in ``text``: inside the last answer block, or the stripped text."""
    parts = answer_parts(env)
    if parts is None:
        stripped = text.strip()
        if not stripped:
            return None
        start = text.index(stripped)
        return start, start + len(stripped)
    prefix, suffix = parts
    pattern = re.escape(prefix) + (r"(.*?)" + re.escape(suffix) if suffix else r"(.*)")
    last = None
    for m in re.finditer(pattern, text, re.DOTALL):
        last = m
    if last is None:
        return None
    start, end = last.span(1)
    inner = text[start:end]
    lead = len(inner) - len(inner.lstrip())
    return start + lead, start + lead + len(inner.strip())


def extract_answer(env: Environment, text: str) -> str | None:
    span = answer_span(env, text)
    return text[span[0]:span[1]] if span else None


# ------------------------------------------------------------------ tools and plausible values
def read_tools(env: Environment) -> list[Tool]:
    return [t for t in env.tools.values() if not t.writes]


def write_tools(env: Environment) -> list[Tool]:
    return [t for t in env.tools.values() if t.writes]


_WORD = re.compile(r"[A-Za-z0-9][\w\-]{2,}")


def words_of(text: str) -> list[str]:
    """Distinct word-like tokens of ``text`` (3+ characters), in order of appearance."""
    return list(dict.fromkeys(_WORD.findall(text)))


def params_of(tool: Tool) -> tuple[dict[str, Any], list[str]]:
    params = tool.schema()["function"]["parameters"]
    return params.get("properties", {}), list(params.get("required", []))


def plausible_value(schema: Mapping[str, Any], rng: random.Random, words: Sequence[str]) -> Any:
    """A value that fits ``schema``; strings come from ``words`` (text the agent has seen)."""
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or list(schema[key])
            return plausible_value(rng.choice(options), rng, words)
    t = schema.get("type")
    if t == "integer":
        lo = int(schema.get("minimum", 1))
        return rng.randint(lo, int(schema.get("maximum", lo + 4)))
    if t == "number":
        lo = float(schema.get("minimum", 1.0))
        return round(rng.uniform(lo, float(schema.get("maximum", lo + 4.0))), 2)
    if t == "boolean":
        return True
    if t == "array":
        return [plausible_value(schema.get("items", {}), rng, words)]
    if t == "object":
        return {}
    if t == "null":
        return None
    return rng.choice(list(words)) if words else "item"


def plausible_args(tool: Tool, rng: random.Random, words: Sequence[str]) -> dict[str, Any]:
    """Arguments for every required parameter (every parameter when none is required)."""
    props, required = params_of(tool)
    names = required or list(props)
    return {k: plausible_value(props[k], rng, words) for k in names if k in props}


def observations(ep: Episode) -> Iterator[tuple[str, str]]:
    """(where, text) of everything the agent has been shown: system, examples, prompt, tool results."""
    for i, m in enumerate(ep.messages):
        if m.role == "assistant" or not m.content:
            continue
        where = "prompt" if i < ep.prefix_len else (f"tool {m.name!r} result" if m.role == "tool" else m.role)
        yield where, m.content


def flat_values(obj: Any, path: str = "data") -> Iterator[tuple[str, Any]]:
    """(path, scalar) for every string or number inside nested dicts and lists."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from flat_values(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flat_values(v, f"{path}[{i}]")
    elif isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
        yield path, obj


def occurs(value: str, text: str) -> bool:
    """Whether ``value`` appears in ``text`` as a whole token (not inside a longer word or number)."""
    if not value.strip():
        return False
    return re.search(r"(?<![\w.])" + re.escape(value) + r"(?![\w])", text) is not None


def number_tokens(text: str) -> list[re.Match[str]]:
    return list(re.finditer(r"-?\d+(?:\.\d+)?", text))
