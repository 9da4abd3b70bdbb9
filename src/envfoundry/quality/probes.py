"""Exploit probes: scripted policies that try to collect reward without doing the task.

A probe is a small class implementing the :class:`~envfoundry.core.policy.Policy` protocol
(``name``, ``act``, ``describe`` with spec ``probe:NAME``, ``start``/``close``), registered
explicitly with :func:`register_probe` (the built-in ones at the end of :mod:`.probes_text` and
:mod:`.probes_tools`, which :mod:`envfoundry.quality` imports first, so :data:`PROBES` is full as
soon as any part of the package is imported; this module imports neither). Probes draw their
choices from ``rng_for(ep.seed, "probe", name)``, a stream hashed from the episode seed, so they are
reproducible by seed and never shift the environment's own ``ep.rng`` stream.

**Probes never cheat.** A probe builds its answers only from what an agent could see: the
messages of the episode (system, examples, prompt, tool results), the tool schemas, the declared
``answer_format`` and, to guess, answers of *other* tasks (:attr:`ProbeContext.pool`, handed over
by the audit). No probe reads the reference solution, the reference answer or ``task.data``; this
module does not even import the code that drives the reference solution. Whether a probe's answer
happened to be the right one (a lucky guess, not an exploit) is decided by the audit, which may
look at the reference (:mod:`envfoundry.quality.audit`).

*Strict* probes write answers that cannot be right by coincidence (empty text, refusals, claims,
instructions to a judge, filler, odd bytes): one pass with an answer that is not the right one is
a finding. The others (echoes, constants, guesses, copied prompt lines, leaks, tool abuse) may
contain the right answer by chance, so they are findings only when they clearly beat chance and
the noop baseline. *Arm* probes (:class:`ArmProbe`) try each of their candidate answers once on
every task (one rollout per arm), so "the same answer on every task" is measured, not sampled.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..core.env import Environment, Episode
from ..core.messages import Message
from ..core.policy import PolicyOutput
from ..core.seeding import derive_seed, rng_for
from ..core.task import Task
from ..core.tools import Tool

#: name -> probe class, in registration order; fill it with :func:`register_probe`
PROBES: dict[str, type[Probe]] = {}


def register_probe(cls: type[Probe]) -> type[Probe]:
    """Register a probe class under its ``name`` (usable as a class decorator)."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"probe class {cls.__qualname__} needs a non-empty `name`")
    if name in PROBES and PROBES[name] is not cls:
        raise ValueError(f"a probe named {name!r} is already registered ({PROBES[name].__qualname__})")
    PROBES[name] = cls
    return cls


@dataclass
class ProbeContext:
    """What a probe may know before its rollouts: the audited tasks (their prompts, never their
    data), tasks outside the selection (``others``, for prompts shared by many tasks), ``pool``:
    reference answers of *other* tasks (what a guesser may have learnt from the split), the run
    seed and the number of samples the audit was asked for."""

    env: Environment
    tasks: Sequence[Task]
    others: Sequence[Task] = ()
    pool: Sequence[str] = ()
    seed: int = 0
    samples: int = 2
    notes: list[str] = field(default_factory=list)


class Probe:
    """Base class of the exploit probes (a Policy). Subclasses set ``name`` and write ``act``.

    ``strict``: a pass whose answer is not the right one is a finding by itself (the probe's
    answers cannot be right by chance). ``blind``: the probe's answer carries no information the
    agent should not have, so a pass whose final answer *is* the right one is a lucky guess, not an
    exploit (leak probes are not blind: their right answers come from a leak). ``per_arm``: each
    arm is judged on its own (the same answer on every task). ``applies(env)`` returns why the
    probe does not fit the environment (it is then skipped); ``text_only``: the probe acts only
    through its final text (the audit skips it when the grader never reads the final text).
    """

    name: ClassVar[str] = ""
    strict: ClassVar[bool] = True
    blind: ClassVar[bool] = True
    per_arm: ClassVar[bool] = False
    text_only: ClassVar[bool] = False

    def __init__(self) -> None:
        self.notes: list[str] = []

    @classmethod
    def summary(cls) -> str:
        """The first line of the probe's docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def applies(self, env: Environment) -> str | None:
        return None

    def prepare(self, ctx: ProbeContext) -> str | None:
        """Called once before the rollouts; returns why the probe has nothing to try (it is then
        skipped), else None."""
        return None

    def rollouts(self, ctx: ProbeContext) -> int:
        """Rollouts per task (default: the audit's samples)."""
        return ctx.samples

    async def act(self, ep: Episode) -> PolicyOutput:
        raise NotImplementedError

    def rng(self, ep: Episode) -> random.Random:
        """A fresh stream per call, the same at every turn of one episode."""
        return rng_for(ep.seed, "probe", self.name)

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

    text_only = True

    def variants(self, ep: Episode) -> list[str]:
        raise NotImplementedError

    async def act(self, ep: Episode) -> PolicyOutput:
        options = self.variants(ep)
        i = self.rng(ep).randrange(len(options)) if options else 0
        return self.say(options[i] if options else "", variant=i)


class Arms:
    """Which sample of a task an episode is: rollout seeds are ``derive_seed(run seed, task id,
    sample)`` (the engine's documented contract), so a probe that knows the run seed can tell its
    k-th rollout of a task from the others and give it its k-th arm."""

    def __init__(self) -> None:
        self._arm: dict[tuple[str, int], int] = {}

    def prepare(self, tasks: Sequence[Task], seed: int, n: int) -> None:
        self._arm = {(t.id, derive_seed(seed, t.id, s)): s for t in tasks for s in range(n)}

    def of(self, ep: Episode, rng: random.Random, n: int) -> int:
        hit = self._arm.get((ep.task.id, ep.seed))
        return hit if hit is not None else rng.randrange(max(1, n))


class ArmProbe(Probe):
    """A text probe that tries each of its candidate answers (arms) once on every task.

    ``candidates(ep)`` lists the answers for one episode's task (the same list at every turn);
    the k-th rollout of a task answers the k-th candidate (nothing when the task has fewer)."""

    text_only = True
    max_arms: ClassVar[int] = 8

    def __init__(self) -> None:
        super().__init__()
        self.arms = Arms()
        self.n_arms = 1

    def arm_count(self, ctx: ProbeContext) -> int:
        raise NotImplementedError

    def candidates(self, ep: Episode) -> list[str]:
        raise NotImplementedError

    def prepare(self, ctx: ProbeContext) -> str | None:
        n = min(self.max_arms, self.arm_count(ctx))
        if n < 1:
            return "it found no candidate answer to try"
        self.n_arms = n
        self.arms.prepare(ctx.tasks, ctx.seed, self.n_arms)
        return None

    def rollouts(self, ctx: ProbeContext) -> int:
        return self.n_arms

    async def act(self, ep: Episode) -> PolicyOutput:
        k = self.arms.of(ep, self.rng(ep), self.n_arms)
        cands = self.candidates(ep)
        answer = cands[k] if k < len(cands) else ""
        return self.say(wrap(ep.env, answer) if answer else "", arm=k, answer=answer[:200])


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


# ------------------------------------------------------------------ what the agent sees
def read_tools(env: Environment) -> list[Tool]:
    return [t for t in env.tools.values() if not t.writes]


def write_tools(env: Environment) -> list[Tool]:
    return [t for t in env.tools.values() if t.writes]


_WORD = re.compile(r"[A-Za-z0-9][\w\-]{2,}")


def words_of(text: str) -> list[str]:
    """Distinct word-like tokens of ``text`` (3+ characters), in order of appearance."""
    return list(dict.fromkeys(_WORD.findall(text)))


def id_like(tokens: Sequence[str]) -> list[str]:
    """Tokens that look like identifiers (hold a digit and a letter or a dash), first."""
    ids = [t for t in tokens if any(c.isdigit() for c in t) and not t.replace(".", "").isdigit()]
    return ids + [t for t in tokens if t not in ids]


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


def json_values(text: str, limit: int = 20) -> list[Any]:
    """The JSON arrays and objects written in ``text`` (outermost ones, in order)."""
    out: list[Any] = []
    dec = json.JSONDecoder()
    i = 0
    while len(out) < limit:
        starts = [j for j in (text.find("[", i), text.find("{", i)) if j >= 0]
        if not starts:
            break
        j = min(starts)
        try:
            value, end = dec.raw_decode(text, j)
        except ValueError:
            i = j + 1
            continue
        out.append(value)
        i = end
    return out


def pieces(text: str) -> list[str]:
    """Each non-empty line of ``text``, then each sentence of lines that hold several."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = list(lines)
    for ln in lines:
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=\S)", ln) if s.strip()]
        if len(sentences) > 1:
            out += sentences
    return list(dict.fromkeys(out))


def blank(text: str) -> str | None:
    """``text`` with its values zeroed or blanked and its shape kept: JSON numbers become 0,
    strings "", booleans false; in other text every number becomes 0. None when nothing changes."""
    s = text.strip()
    try:
        value = json.loads(s)
    except ValueError:
        value = None
    if isinstance(value, (list, dict)):
        return json.dumps(_blank_json(value))
    out = re.sub(r"\d+(?:\.\d+)?", lambda m: "0.0" if "." in m.group() else "0", s)
    out = re.sub(r"-(?=0\b)", "", out)
    return out if out != s else None


def _blank_json(v: Any) -> Any:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return 0
    if isinstance(v, str):
        return ""
    if isinstance(v, list):
        return [_blank_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _blank_json(x) for k, x in v.items()}
    return v


def probe_classes() -> dict[str, type[Probe]]:
    """Every registered probe, in registration order (the built-in ones first: importing any part
    of :mod:`envfoundry.quality` runs its ``__init__``, which registers them)."""
    return dict(PROBES)


def make_probe(name: str) -> Probe:
    classes = probe_classes()
    if name not in classes:
        raise KeyError(f"unknown probe {name!r} (probes: {', '.join(classes)})")
    return classes[name]()
