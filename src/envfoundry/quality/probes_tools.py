"""Tool probes: echoing tool results, abusing tools, and looking for leaked answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..core.env import Environment, Episode
from ..core.messages import Message, ToolCall
from ..core.policy import PolicyOutput
from ..core.task import Task
from .probes import (
    Probe,
    flat_values,
    observations,
    occurs,
    params_of,
    plausible_args,
    read_tools,
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


class Leak(Probe):
    """Looks for the reference answer or private task data (``task.data``) in what the agent sees
    (system, examples, prompt, read-tool results) and answers with what it found there. The
    reference is read only to know what to look for."""

    name = "leak"
    strict = False  # a short answer can appear in the prompt by coincidence ("0 + 5")

    def __init__(self) -> None:
        super().__init__()
        self.shared: set[str] = set()

    def prepare(self, env: Environment, tasks: Sequence[Task], others: Sequence[Task], seed: int) -> None:
        """Prompt texts that several tasks share (system prompt, worked examples) hold nothing
        task-specific: a secret seen only there is a coincidence, not a leak."""
        counts = Counter(m.content for t in [*tasks, *others] for m in env.prompt_messages(t))
        self.shared = {text for text, c in counts.items() if c > 1}

    def _read_calls(self, ep: Episode) -> list[ToolCall]:
        tools = read_tools(ep.env)
        if not tools or ep.env.max_turns < 2:
            return []
        ref = self.reference(ep)
        seen: dict[str, dict[str, Any]] = {}
        for a in ref.actions if ref is not None else []:
            for c in a.tool_calls:
                if c.name not in seen and isinstance(c.arguments, dict):
                    seen[c.name] = dict(c.arguments)
        rng = self.rng(ep)
        words = words_of(ep.task.prompt)
        return [ToolCall(t.name, seen.get(t.name) or plausible_args(t, rng, words), id=f"leak{i}")
                for i, t in enumerate(tools)]

    def _secrets(self, ep: Episode) -> list[tuple[str, str]]:
        """(label, value) pairs the agent must not be shown; the reference answer first."""
        out: list[tuple[str, str]] = []
        ref = self.reference(ep)
        if ref is not None and ref.answer:
            out.append(("reference answer", ref.answer))
        for path, v in flat_values(ep.task.data):
            s = str(v)
            if s.strip() and all(s != x for _, x in out):
                out.append((path, s))
        return out

    async def act(self, ep: Episode) -> PolicyOutput:
        if ep.turns == 0:
            calls = self._read_calls(ep)
            if calls:
                return PolicyOutput(_calls_message(calls), info={"probe": self.name})
        found: list[dict[str, str]] = []
        answer = ""
        texts = [(w, text) for w, text in observations(ep) if text not in self.shared]
        for label, value in self._secrets(ep):
            where = next((w for w, text in texts if occurs(value, text)), None)
            if where is not None:
                answer = answer or value
                found.append({"secret": label, "value": value[:200], "seen_in": where})
        return self.say(wrap(ep.env, answer) if answer else "", leaks=found)
