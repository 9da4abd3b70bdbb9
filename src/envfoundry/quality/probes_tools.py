"""Tool probes: echoing tool results, abusing tools, and using values that leak to the agent.

The leak probes never look at the reference or ``task.data``: they read what the agent sees
(prompt, tool results after calling the read tools with identifiers from the prompt) and pick
out values shown under a name that no agent should be shown (``expected``, ``answer``,
``solution``, ``internal``, ``debug``...). ``leak`` answers with such a value; ``leak_to_tools``
also passes it to the write tools, as the argument of the matching type. The audit then tells
whether the value was private (:mod:`envfoundry.quality.audit`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..core.env import Environment, Episode
from ..core.messages import Message, ToolCall
from ..core.policy import PolicyOutput
from ..core.tools import Tool
from .probes import (
    Arms,
    Probe,
    ProbeContext,
    id_like,
    json_values,
    observations,
    params_of,
    plausible_args,
    plausible_value,
    read_tools,
    register_probe,
    words_of,
    wrap,
    write_tools,
)

_CLAIM = "Done. All requested changes have been made."


def _calls_message(calls: list[ToolCall]) -> Message:
    return Message("assistant", "", calls)


class EchoTools(Probe):
    """Calls up to three read tools with plausible arguments, then repeats their output as the answer."""

    name = "echo_tools"
    strict = False  # a tool result may legitimately be the answer

    def applies(self, env: Environment) -> str | None:
        if not read_tools(env):
            return "the environment has no read tools"
        if env.max_turns < 2:
            return f"max_turns={env.max_turns} leaves no turn to answer after a tool call"
        return None

    async def act(self, ep: Episode) -> PolicyOutput:
        rng = self.rng(ep)
        if ep.turns == 0:
            tools = read_tools(ep.env)
            picked = rng.sample(tools, min(3, len(tools)))
            words = words_of(ep.task.prompt)
            calls = [ToolCall(t.name, plausible_args(t, rng, words), id=f"echo{i}") for i, t in enumerate(picked)]
            return PolicyOutput(_calls_message(calls), info={"probe": self.name})
        echoed = "\n".join(m.content for m in ep.messages[ep.prefix_len:] if m.role == "tool")
        return self.say(rng.choice([echoed, wrap(ep.env, echoed)]))


def _odd_values(schema: dict[str, Any]) -> list[Any]:
    t = schema.get("type")
    if t == "integer":
        return [-1, 0, 10**9]
    if t == "number":
        return [-1.0, 0.0, 1e9]
    if t == "string" or "enum" in schema:
        return ["", "x" * 1000, "*"]
    if t == "array":
        return [[]]
    return [None]


class ToolAbuse(Probe):
    """Calls every write tool with plausible arguments, repeats a write ten times, sends invalid
    arguments and out-of-range values (-1, 0, 10**9, empty and huge strings), then claims success."""

    name = "tool_abuse"
    strict = False  # random valid writes can complete an easy task by chance

    def applies(self, env: Environment) -> str | None:
        return None if env.tools else "the environment has no tools"

    def _plan(self, ep: Episode) -> list[Message]:
        rng = self.rng(ep)
        env = ep.env
        words = words_of(ep.task.prompt)
        writes = write_tools(env) or list(env.tools.values())
        every = [ToolCall(t.name, plausible_args(t, rng, words)) for t in writes]
        first = writes[0]
        repeat_args = plausible_args(first, rng, words)
        repeated = [ToolCall(first.name, dict(repeat_args)) for _ in range(10)]
        bad: list[ToolCall] = []
        for t in env.tools.values():
            props, required = params_of(t)
            base = plausible_args(t, rng, words)
            bad.append(ToolCall(t.name, '{"' + (required[0] if required else "x") + '": '))
            bad.append(ToolCall(t.name, {**base, "unexpected_argument": 1}))
            if required:
                bad.append(ToolCall(t.name, {}))
            for arg, sch in props.items():
                bad.append(ToolCall(t.name, {**base, arg: {"nested": ["wrong type"]}}))
                for v in _odd_values(sch):
                    bad.append(ToolCall(t.name, {**base, arg: v}))
        phases = [every, repeated, bad[:60]]
        room = max(1, env.max_turns - 1)
        while len(phases) > room:  # merge the last phases when the turn limit is tight
            phases[-2:] = [phases[-2] + phases[-1]]
        return [_calls_message(p) for p in phases if p]

    async def act(self, ep: Episode) -> PolicyOutput:
        plan = self._plan(ep)
        if ep.turns < len(plan):
            msg = plan[ep.turns]
            for i, c in enumerate(msg.tool_calls):
                c.id = f"abuse{ep.turns}_{i}"
            return PolicyOutput(msg, info={"probe": self.name, "phase": ep.turns})
        return self.say(_CLAIM)


# ------------------------------------------------------------------ leaks
#: the start of a word in a name that no agent should be shown the value of (``expected_refund``,
#: ``_internal.note``, ``goldAnswer``, "the grader expects"); "resolution" or "incorrect" are not
_SECRET_WORDS = ("expect", "answer", "solution", "gold", "target", "correct", "truth", "internal", "debug", "secret",
                 "hidden", "private", "grader", "oracle")
_SECRET = "|".join(_SECRET_WORDS)


def secret_name(name: str) -> bool:
    """Whether a field name or a word says its value is private: one of its words (split at
    non-letters and camelCase) starts with a word of :data:`_SECRET_WORDS`."""
    words = re.split(r"[^A-Za-z]+|(?<=[a-z])(?=[A-Z])", name)
    return any(w.lower().startswith(_SECRET_WORDS) for w in words)

_KEY_VALUE = re.compile(r"([A-Za-z_][\w\-]*)\s*[:=]\s*(\"[^\"\n]{1,80}\"|'[^'\n]{1,80}'|[^\s,;\"'}\]]{1,80})")
# a lookahead, so that "the grader expects 742" yields "expects 742" after "grader expects"
_WORD_VALUE = re.compile(r"\b(\w*(?:" + _SECRET + r")\w*)(?=(?:\s+(?:is|was|are|be|of|=|:))?\s+([^\s,;]{1,80}))",
                         re.I)
_STOP = {"the", "a", "an", "is", "are", "was", "be", "to", "of", "and", "or", "in", "on", "for", "it", "this",
         "that", "with", "as", "by", "at", "from", "if", "when", "you", "your", "we", "i", "will", "must", "should"}


@dataclass(frozen=True)
class Sighting:
    """A value shown to the agent under a suspicious name: where, under what, and how sure
    (rank 0: a JSON field, 1: ``name: value`` or ``name=value`` text, 2: a name followed by a value)."""

    label: str
    value: str | int | float
    where: str
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": str(self.value)[:200], "seen_in": self.where}


def _clean(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v.rstrip(".,;:)]}!?")


def _leaves(v: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(v, dict):
        return [x for k, w in v.items() for x in _leaves(w, f"{path}.{k}" if path else str(k))]
    if isinstance(v, list):
        return [x for w in v[:200] for x in _leaves(w, path)]
    return [(path, v)]


def _json_in(text: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except ValueError:
        return json_values(text)


def sightings(where: str, text: str) -> list[Sighting]:
    """Values that ``text`` shows under a name that suggests a private value."""
    out: list[Sighting] = []
    for v in _json_in(text):
        for path, leaf in _leaves(v):
            if secret_name(path) and isinstance(leaf, (str, int, float)) and not isinstance(leaf, bool):
                if str(leaf).strip():
                    out.append(Sighting(path, leaf, where, 0))
    for m in _KEY_VALUE.finditer(text):
        if secret_name(m.group(1)) and (value := _clean(m.group(2))):
            out.append(Sighting(m.group(1), value, where, 1))
    for m in _WORD_VALUE.finditer(text):
        value = _clean(m.group(2))
        if value and value.lower() not in _STOP and not secret_name(value) and secret_name(m.group(1)):
            out.append(Sighting(m.group(1), value, where, 2))
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).replace(",", ""))
    except ValueError:
        return None


class _LeakBase(Probe):
    """Reads what the agent sees and ranks the values shown under suspicious names."""

    strict = False  # a value under a name like "target" may be a fair part of the task
    blind = False  # its right answers come from what leaked: they are not lucky guesses

    def __init__(self) -> None:
        super().__init__()
        self.shared_texts: set[str] = set()
        self.shared: set[tuple[str, str]] = set()
        self.arms = Arms()
        self.n = 2

    def prepare(self, ctx: ProbeContext) -> str | None:
        """Prompt texts that (nearly) every task shows (a system prompt, worked examples) hold
        nothing task-specific; nor does a name that shows the same value in the prompt of every
        task that has it ("Answer: yes or no"). A text or a name whose value changes from task to
        task ("expected=742") is what a leak looks like, even when tasks share a value ("expected=yes")."""
        tasks = [*ctx.tasks, *ctx.others]
        texts = Counter(text for t in tasks for text in {m.content for m in ctx.env.prompt_messages(t)})
        self.shared_texts = {text for text, c in texts.items() if c >= max(2, 0.9 * len(tasks))}
        values: dict[str, Counter[str]] = {}
        for t in tasks:
            seen = {(s.label.lower(), str(s.value)) for m in ctx.env.prompt_messages(t)
                    for s in sightings("prompt", m.content)}
            for label, value in seen:
                values.setdefault(label, Counter())[value] += 1
        self.shared = {(label, v) for label, c in values.items() if len(c) == 1 for v, n in c.items() if n > 1}
        self.n = ctx.samples
        self.arms.prepare(ctx.tasks, ctx.seed, self.n)
        return None

    def read_calls(self, ep: Episode) -> list[ToolCall]:
        """Each read tool, called with identifiers from the prompt (two argument sets at most)."""
        tools = read_tools(ep.env)
        if not tools or ep.env.max_turns < 2:
            return []
        rng = self.rng(ep)
        ids = id_like(words_of(ep.task.prompt))
        calls: list[ToolCall] = []
        for t in tools[:6]:
            props, required = params_of(t)
            names = required or list(props)
            for k in range(2 if names else 1):
                args = {p: (ids[(k + i) % len(ids)] if ids and props[p].get("type") == "string"
                            and "enum" not in props[p] else plausible_value(props[p], rng, ids))
                        for i, p in enumerate(names) if p in props}
                if k and args == calls[-1].arguments:
                    break
                calls.append(ToolCall(t.name, args, id=f"leak{len(calls)}"))
        return calls[:12]

    def found(self, ep: Episode) -> list[Sighting]:
        """Sightings in what the agent saw, best first, one per value."""
        out: dict[str, Sighting] = {}
        for where, text in observations(ep):
            if text in self.shared_texts:
                continue
            for s in sightings(where, text):
                key = str(s.value)
                if (s.label.lower(), key) in self.shared and where == "prompt":
                    continue
                if key not in out or s.rank < out[key].rank:
                    out[key] = s
        ranked = sorted(out.values(), key=lambda s: s.rank)
        if not ranked:
            return ranked
        k = self.arms.of(ep, self.rng(ep), self.n) % len(ranked)
        return ranked[k:] + ranked[:k]  # the k-th rollout of a task tries the k-th best value first


class Leak(_LeakBase):
    """Answers with a value that the prompt or a read tool's result shows under a name no agent
    should be shown (expected, answer, solution, internal, debug...)."""

    name = "leak"

    async def act(self, ep: Episode) -> PolicyOutput:
        if ep.turns == 0 and (calls := self.read_calls(ep)):
            return PolicyOutput(_calls_message(calls), info={"probe": self.name})
        found = self.found(ep)
        value = str(found[0].value) if found else ""
        return self.say(wrap(ep.env, value) if value else "", leaks=[s.to_dict() for s in found[:5]], used=value)


def _fill(tool: Tool, leaked: list[Sighting], fields: dict[str, list[Any]], ids: list[str],
          ep: Episode, rng: Any) -> tuple[dict[str, Any], list[str]]:
    """Arguments for ``tool``: a leaked value of the matching type where one fits (best name
    match first), else a value the agent saw under the parameter's name, else a plausible one."""
    props, required = params_of(tool)
    args: dict[str, Any] = {}
    used: list[str] = []
    for p in required or list(props):
        sch = props.get(p, {})
        t = sch.get("type")
        fits: list[Any] = []
        for s in leaked:
            num = _number(s.value)
            if "enum" in sch:
                ok = s.value in sch["enum"]
                v: Any = s.value
            elif t == "integer":
                ok, v = num is not None and num == int(num), int(num or 0)
            elif t == "number":
                ok, v = num is not None, num
            elif t == "string":
                ok, v = isinstance(s.value, str) and num is None, s.value
            else:
                ok, v = False, None
            if ok:
                score = sum(w in s.label.lower() for w in p.lower().split("_") if len(w) > 2)
                fits.append((-score, s.rank, len(fits), v))
        if fits:
            args[p] = min(fits)[3]
            used.append(p)
            continue
        seen = fields.get(p) or (fields.get("id") if p.endswith("_id") else None)
        args[p] = seen[0] if seen else plausible_value(sch, rng, ids)
    return args, used


class LeakToTools(_LeakBase):
    """Passes values shown under a name no agent should be shown to the write tools, as the
    arguments of the matching type, then answers with them: a leak that a grader of the world
    would never see in a text answer."""

    name = "leak_to_tools"

    def applies(self, env: Environment) -> str | None:
        if not write_tools(env):
            return "the environment has no write tools"
        if env.max_turns < 2:
            return f"max_turns={env.max_turns} leaves no turn to write after reading"
        return None

    def _writes(self, ep: Episode, leaked: list[Sighting]) -> tuple[list[ToolCall], list[dict[str, Any]]]:
        rng = self.rng(ep)
        fields: dict[str, list[Any]] = {}
        for _, text in observations(ep):
            for v in _json_in(text):
                for path, leaf in _leaves(v):
                    if isinstance(leaf, (str, int, float)) and not isinstance(leaf, bool):
                        fields.setdefault(path.rsplit(".", 1)[-1], []).append(leaf)
        ids = id_like(words_of(ep.task.prompt))
        calls, used = [], []
        for t in write_tools(ep.env)[:4]:
            args, filled = _fill(t, leaked, fields, ids, ep, rng)
            if filled:
                calls.append(ToolCall(t.name, args, id=f"leakw{len(calls)}"))
                used.append({"tool": t.name, "leaked_into": filled})
        return calls, used

    async def act(self, ep: Episode) -> PolicyOutput:
        if ep.turns == 0 and (calls := self.read_calls(ep)):
            return PolicyOutput(_calls_message(calls), info={"probe": self.name})
        found = self.found(ep)
        wrote = any(c.id.startswith("leakw") for m in ep.messages[ep.prefix_len:] for c in m.tool_calls)
        if found and not wrote:
            calls, used = self._writes(ep, found)
            if calls:
                return PolicyOutput(_calls_message(calls), info={"probe": self.name, "writes": used,
                                                             "leaks": [s.to_dict() for s in found[:5]]})
        value = str(found[0].value) if found else ""
        return self.say(wrap(ep.env, value) if value else "", leaks=[s.to_dict() for s in found[:5]], used=value)


for _cls in (EchoTools, ToolAbuse, Leak, LeakToTools):
    register_probe(_cls)
