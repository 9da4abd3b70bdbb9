"""The mutations of :mod:`envfoundry.quality.mutation`: changed copies of a reference solution.

Wrong ones must lower the score, equivalent ones must not (the list is in that module's
documentation). :class:`MutationGenerator` makes them for one task from the recorded reference
actions, the episode's observations and the task's data.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.env import Environment, Episode
from ..core.messages import Message, ToolCall
from ..core.outcome import Score
from ..core.task import Task
from .probes import answer_parts, answer_span, flat_values, plausible_args, words_of, wrap

WRONG, EQUIVALENT = "wrong", "equivalent"


@dataclass
class Reference:
    """What the reference solution did on one task: its actions, final text and score. Only the
    audit's judges and the mutation tests read it; no probe does."""

    task: Task
    seed: int
    actions: list[Message]
    final: str
    answer: str | None  # the text in the answer slot of ``final`` (None when there is none)
    score: Score | None
    error: str | None
    episode: Episode | None
    text_matters: bool | None = None  # whether blanking the final text lowers the score (None: not measured)


@dataclass
class Mutation:
    """A changed copy of the reference actions and whether it must lower the score."""

    name: str
    kind: str  # "wrong" | "equivalent"
    actions: list[Message]
    detail: str
    text: bool = False  # changes only the final text
    domain: bool = False  # from the environment's own mutations hook


def _args(call: ToolCall) -> dict[str, Any] | None:
    if isinstance(call.arguments, dict):
        return call.arguments
    try:
        v = json.loads(call.arguments or "{}")
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def _replace_call(actions: list[Message], mi: int, ci: int, new: ToolCall | None) -> list[Message]:
    out = copy.deepcopy(actions)
    msg = out[mi]
    if new is not None:
        msg.tool_calls[ci] = new
        return out
    del msg.tool_calls[ci]
    if not msg.tool_calls and mi < len(out) - 1:
        del out[mi]  # a message left without calls would end the episode early
    return out


def _call_key(call: ToolCall) -> str:
    args = _args(call)
    return json.dumps([call.name, call.arguments if args is None else args], sort_keys=True, default=str)


def _failed_calls(ref: Reference) -> set[tuple[int, int]]:
    """(action index, call index) of the reference's calls that were answered with an error."""
    if ref.episode is None:
        return set()
    results = {m.tool_call_id: m.content for m in ref.episode.messages if m.role == "tool"}
    sent = [m for m in ref.episode.messages[ref.episode.prefix_len:] if m.role == "assistant"]
    return {(mi, ci) for mi, m in enumerate(sent) for ci, c in enumerate(m.tool_calls)
            if results.get(c.id, "").startswith("error")}


def _alternative_groups(data: Any) -> list[set[str]]:
    """Strings that the task's data holds at the same place of a list (``payment_ids[]``,
    ``candidates[].product_id``): values the grader may accept in place of each other."""
    groups: dict[str, set[str]] = {}
    for path, v in flat_values(data):
        if isinstance(v, str) and "[" in path:
            groups.setdefault(re.sub(r"\[\d+\]", "[]", path), set()).add(v)
    return [g for g in groups.values() if len(g) > 1]


def _shape(s: str) -> str:
    return re.sub(r"[A-Z]", "A", re.sub(r"[a-z]", "a", re.sub(r"\d", "9", s)))


# ------------------------------------------------------------------ generating mutations
class MutationGenerator:
    """The generic mutations of one task's reference actions."""

    def __init__(self, env: Environment, ref: Reference, rng: random.Random, pool: Sequence[str],
                 text_matters: bool) -> None:
        self.env, self.ref, self.rng, self.pool, self.text_matters = env, ref, rng, pool, text_matters
        self.actions = ref.actions
        seen = "\n".join(m.content for m in (ref.episode.messages if ref.episode else []) if m.role != "assistant")
        self.tokens = words_of(seen)
        failed = _failed_calls(ref)
        # a write answered with an error did no step, and one the reference repeats later was
        # superseded (a retry after its effect was lost): mutating or dropping those tests nothing
        writes = [(mi, ci) for mi, a in enumerate(self.actions) for ci, c in enumerate(a.tool_calls)
                  if c.name in env.tools and env.tools[c.name].writes and (mi, ci) not in failed]
        last = {_call_key(self.actions[mi].tool_calls[ci]): (mi, ci) for mi, ci in writes}
        self.writes = [w for w in writes if last[_call_key(self.actions[w[0]].tool_calls[w[1]])] == w]
        self.alternatives = _alternative_groups(ref.task.data)

    def _cap(self, items: list[Mutation], n: int) -> list[Mutation]:
        return items if len(items) <= n else self.rng.sample(items, n)

    def text(self) -> list[Mutation]:
        final = self.actions[-1].content if self.actions else ""
        span = answer_span(self.env, final) if self.text_matters else None
        if span is None:
            return []
        s, e = span
        gold = final[s:e]

        def with_answer(new: str) -> list[Message]:
            out = copy.deepcopy(self.actions)
            out[-1].content = final[:s] + new + final[e:]
            return out

        muts: list[Mutation] = []
        for delta in (1, -1):
            shifted = _shift_numbers(gold, delta)
            if shifted != gold:
                muts.append(Mutation("off_by_one_answer", WRONG, with_answer(shifted), f"{gold!r} -> {shifted!r}",
                                     text=True))
        others = list(dict.fromkeys(p for p in self.pool if p.strip() != gold.strip()))
        if others:
            other = self.rng.choice(others)
            muts.append(Mutation("other_answer", WRONG, with_answer(other), f"{gold!r} -> {other!r}", True))
        muts += self._hedges(final, gold, others)
        around = copy.deepcopy(self.actions)
        around[-1].content = "\n " + final + " \n"
        muts.append(Mutation("whitespace_around", EQUIVALENT, around, "whitespace around the final text", True))
        if answer_parts(self.env) is not None:
            muts.append(Mutation("whitespace_in_answer", EQUIVALENT, with_answer(f" {gold} "),
                                 f"{gold!r} -> {f' {gold} '!r}", True))
        return muts

    def _hedges(self, final: str, gold: str, others: list[str]) -> list[Mutation]:
        """The right answer hedged with a wrong one: two answer blocks (both orders) or "wrong or
        right" in one block. Only with an answer format: without one, which part of a text is
        final is the grader's own reading (a sentence that corrects itself ends with the result)."""
        if answer_parts(self.env) is None:
            return []
        wrong = _shift_numbers(gold, 1)
        if wrong == gold:
            wrong = others[0] if others else ""
        if not wrong.strip() or wrong.strip() == gold.strip():
            return []
        forms = [(wrap(self.env, wrong) + " " + wrap(self.env, gold), "a wrong block, then the right one"),
                 (wrap(self.env, gold) + " " + wrap(self.env, wrong), "the right block, then a wrong one"),
                 (wrap(self.env, f"{wrong} or {gold}"), f"{wrong!r} or {gold!r} in one block")]
        out = []
        for text, detail in forms:
            acts = copy.deepcopy(self.actions)
            acts[-1].content = text
            out.append(Mutation("hedge_answer", WRONG, acts, detail, text=True))
        return out

    def _arg_values(self) -> list[tuple[int, int, str, Any]]:
        out = []
        for mi, ci in self.writes:
            args = _args(self.actions[mi].tool_calls[ci]) or {}
            out += [(mi, ci, k, v) for k, v in args.items()]
        return out

    def _set_arg(self, mi: int, ci: int, key: str, value: Any) -> list[Message]:
        call = self.actions[mi].tool_calls[ci]
        args = dict(_args(call) or {})
        args[key] = value
        return _replace_call(self.actions, mi, ci, ToolCall(call.name, args, call.id))

    def _alternatives(self, tool_name: str, key: str, value: str) -> list[str]:
        """Other valid values: enum members, or same-shaped tokens the agent saw; never a value
        that the task's data lists beside ``value`` (an accepted alternative, e.g. "any card")."""
        schema = self.env.tools[tool_name].schema()["function"]["parameters"].get("properties", {}).get(key, {})
        accepted = set().union(*(g for g in self.alternatives if value in g))
        if "enum" in schema:
            return [v for v in schema["enum"] if v != value and v not in accepted]
        shape = _shape(value)
        return [t for t in self.tokens if t != value and t not in accepted and _shape(t) == shape]

    def tools(self) -> list[Mutation]:
        nums: list[Mutation] = []
        strs: list[Mutation] = []
        for mi, ci, k, v in self._arg_values():
            name = self.actions[mi].tool_calls[ci].name
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                for d in (1, -1):
                    nums.append(Mutation("off_by_one_arg", WRONG, self._set_arg(mi, ci, k, v + d),
                                         f"{name}.{k}: {v!r} -> {v + d!r}"))
            elif isinstance(v, str):
                alts = self._alternatives(name, k, v)
                if alts:
                    alt = self.rng.choice(alts)
                    strs.append(Mutation("wrong_value_arg", WRONG, self._set_arg(mi, ci, k, alt),
                                         f"{name}.{k}: {v!r} -> {alt!r}"))
        drops = [Mutation("missing_step", WRONG, _replace_call(self.actions, mi, ci, None),
                          f"dropped {self.actions[mi].tool_calls[ci].name}({_short(self.actions[mi].tool_calls[ci])})")
                 for mi, ci in self.writes]
        return self._cap(nums, 4) + self._cap(strs, 3) + self._cap(drops, 3) + self._equivalent_calls()

    def _equivalent_calls(self) -> list[Mutation]:
        reordered = copy.deepcopy(self.actions)
        floated = copy.deepcopy(self.actions)
        n_re = n_fl = 0
        for a_re, a_fl in zip(reordered, floated, strict=True):
            for c_re, c_fl in zip(a_re.tool_calls, a_fl.tool_calls, strict=True):
                args = _args(c_re)
                if args is None or c_re.name not in self.env.tools:
                    continue
                if len(args) >= 2:
                    c_re.arguments = json.dumps(dict(reversed(list(args.items()))))
                    n_re += 1
                props = self.env.tools[c_re.name].schema()["function"]["parameters"].get("properties", {})
                fl = {k: float(v) if type(v) is int and props.get(k, {}).get("type") in ("integer", "number") else v
                      for k, v in args.items()}
                if fl != args or any(type(fl[k]) is not type(args[k]) for k in args):
                    c_fl.arguments = fl
                    n_fl += 1
        out = []
        if n_re:
            out.append(Mutation("reorder_keys", EQUIVALENT, reordered, f"keys reversed in {n_re} call(s)"))
        if n_fl:
            out.append(Mutation("int_as_float", EQUIVALENT, floated, f"integers as floats in {n_fl} call(s)"))
        return out

    def extra_writes(self) -> list[list[Mutation]]:
        """Candidate extra write calls, one list per write tool (tried in order until one bites)."""
        tools = [t for t in self.env.tools.values() if t.writes]
        where = max((i for i, a in enumerate(self.actions) if a.tool_calls), default=None)
        out = []
        for t in tools:
            cands: list[dict[str, Any]] = []
            for mi, ci in self.writes:
                c = self.actions[mi].tool_calls[ci]
                if c.name == t.name and (args := _args(c)) is not None:
                    for k, v in args.items():
                        if isinstance(v, str):
                            cands += [{**args, k: alt} for alt in self._alternatives(t.name, k, v)[:3]]
                        elif isinstance(v, (int, float)) and not isinstance(v, bool):
                            cands.append({**args, k: v + 1})
            cands += [plausible_args(t, self.rng, self.tokens) for _ in range(3)]
            muts = []
            for args in cands[:8]:
                acts = copy.deepcopy(self.actions)
                call = ToolCall(t.name, args)
                if where is not None:
                    acts[where].tool_calls.append(call)
                else:
                    acts.insert(max(0, len(acts) - 1), Message("assistant", "", [call]))
                muts.append(Mutation("extra_write", WRONG, acts, f"extra {t.name}({_short(call)})"))
            out.append(muts)
        return out if len(out) <= 3 else self.rng.sample(out, 3)


def _short(call: ToolCall, n: int = 80) -> str:
    a = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments, default=str)
    return a if len(a) <= n else a[: n - 3] + "..."


def _shift_numbers(text: str, delta: int) -> str:
    def sub(m: re.Match[str]) -> str:
        raw = m.group().replace(",", "")
        if "." in raw:
            places = len(raw.split(".")[1])
            return f"{float(raw) + delta:.{places}f}"
        return str(int(raw) + delta)

    return re.sub(r"-?\d{1,3}(?:,\d{3})+(?!\d)|-?\d+(?:\.\d+)?", sub, text)
