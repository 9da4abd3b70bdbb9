"""Grading a declarative task: the world diff, the policy's trace rules and the final answer.

1. ``state``: the task's expected outcome (``data.expect``) as a :class:`~envfoundry.StateDiffSpec`
   (required inserts, updates and deletes with field predicates; allowed and ignored changes;
   every other change is collateral), graded by :func:`~envfoundry.grade_state_diff`.
2. ``rules``: each of the task's policy rules checked on the trace of tool calls (a call counts
   when it succeeded, unless the rule says ``include_failed``), against the world as it was before.
3. ``answer`` (when the task expects one): the final answer, read from the last message (inside
   the environment's answer format when it has one; two different answers is a wrong answer).

value = state value x (1 if every rule holds else 0) x (1 if the answer is right else 0, when one
is expected); passed = all three pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import ToolCallError
from ..core.grader import GradeInput
from ..core.messages import Message
from ..core.outcome import Score
from ..core.tools import Tool
from ..grading.predicates import Pred, eq, ge, gt, le, lt, ne, one_of, satisfies
from ..grading.state_diff import ChangePattern, Delete, Insert, StateDiffSpec, Update, grade_state_diff
from .context import Ctx, ListType, RecType, Scope, suggest
from .errors import DeclarativeError, ExprError, Loc
from .expr import Expr, compile_expr
from .functions import is_num, show
from .models import RuleSpec
from .worlds import EpisodeWorld

CALL_FIELDS = frozenset({"tool", "args", "ok", "result", "index"})
CALL_TYPE = RecType(CALL_FIELDS, "a tool call", "field")


# ------------------------------------------------------------------ the state layer
def _pred(p: Mapping[str, Any]) -> Any:
    op, v = p["op"], p.get("value")
    if op == "eq":
        if is_num(v) and isinstance(v, float):
            return satisfies(lambda x, v=v: is_num(x) and abs(x - v) <= 1e-9, f"== {v!r}")
        return eq(v)
    if op == "approx":
        tol = float(p.get("tol", 0))
        return satisfies(lambda x, v=v, t=tol: is_num(x) and abs(x - v) <= t + 1e-9, f"within {tol:g} of {v!r}")
    if op == "one_of":
        return one_of(*v)
    if op == "between":
        lo, hi = v
        return satisfies(lambda x, lo=lo, hi=hi: x is not None and lo <= x <= hi, f"between {lo!r} and {hi!r}")
    if op == "contains":
        want = str(v).casefold()
        return satisfies(lambda x, w=want: isinstance(x, str) and w in x.casefold(), f"contains {v!r}")
    if op == "any":
        return satisfies(lambda x: x is not None, "has a value")
    return {"ge": ge, "gt": gt, "le": le, "lt": lt, "ne": ne}[op](v)


def state_spec(expect: Mapping[str, Any]) -> StateDiffSpec:
    reqs: list[Any] = []
    for r in expect.get("require", []):
        where: dict[str, Pred] = {f: _pred(p) for f, p in r.get("where", {}).items()}
        name = r.get("name") or ""
        partial = bool(expect.get("partial", True))
        if r["kind"] == "insert":
            reqs.append(Insert(r["table"], where=where, count=int(r.get("count", 1)), name=name,
                               weight=float(r.get("weight", 1.0)), partial=partial))
        elif r["kind"] == "update":
            reqs.append(Update(r["table"], r["key"], where=where, name=name, weight=float(r.get("weight", 1.0)),
                               partial=partial))
        else:
            reqs.append(Delete(r["table"], r["key"], name=name, weight=float(r.get("weight", 1.0))))
    return StateDiffSpec(
        require=reqs,
        allow=[ChangePattern(p.get("table"), p.get("op"), p.get("field")) for p in expect.get("allow", [])],
        ignore=[ChangePattern(p.get("table"), p.get("op"), p.get("field")) for p in expect.get("ignore", [])],
        partial_cap=float(expect.get("partial_cap", 0.5)),
        collateral_penalty=float(expect.get("collateral_penalty", 0.25)),
    )


# ------------------------------------------------------------------ the trace
def trace(messages: Sequence[Message], tools: Mapping[str, Tool]) -> list[dict[str, Any]]:
    """Every tool call: ``{tool, args, ok, result, index}``; ``args`` with the tool's defaults filled
    in when the call was valid, ``ok`` when it did not fail."""
    results = {m.tool_call_id: m.content for m in messages if m.role == "tool"}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role != "assistant":
            continue
        for c in m.tool_calls:
            res = results.get(c.id, "error: no result")
            args: Any = c.arguments
            tool = tools.get(c.name)
            try:
                args = tool.parse_args(args) if tool is not None else None
            except ToolCallError:
                args = None
            if args is None:
                try:
                    raw = json.loads(c.arguments) if isinstance(c.arguments, str) else c.arguments
                except ValueError:
                    raw = {}
                args = raw if isinstance(raw, dict) else {}
            out.append({"tool": c.name, "args": args, "ok": tool is not None and not res.startswith("error:"),
                        "result": res, "index": len(out)})
    return out


@dataclass
class Rule:
    id: str
    text: str
    tools: tuple[str, ...] | None
    when: Expr | None
    require: Expr | None
    forbid: Expr | bool | None
    check: Expr | None
    include_failed: bool


def rule_scope(constants: Mapping[str, Any], tables: Mapping[str, frozenset[str]], where: str) -> Scope:
    names = {k: None for k in constants}
    names.update({"call": CALL_TYPE, "before": ListType(CALL_TYPE), "after": ListType(CALL_TYPE),
                  "calls": ListType(CALL_TYPE), "answer": None, "params": None})
    return Scope(names, dict(tables), random=False, world=True, where=where)


def compile_rule(spec: RuleSpec, raw: Any, loc: Loc, scope: Scope, tools: Mapping[str, Tool]) -> Rule:
    def at(k: str) -> Loc:
        return raw.at(k) if raw is not None and hasattr(raw, "at") and k in getattr(raw, "lines", {}) else loc

    for t in spec.tools or ():
        if t not in tools:
            raise DeclarativeError(at("tools"), f"rule {spec.id!r} names unknown tool {t!r}{suggest(t, tools)} "
                                   f"(tools: {', '.join(tools)})")
    sc = Scope({**scope.names}, scope.tables, False, True, where=f"in rule {spec.id!r}")
    if spec.check is not None:
        sc.names.pop("call")
        sc.names.pop("before")
        sc.names.pop("after")
    forbid: Expr | bool | None = spec.forbid
    if isinstance(spec.forbid, str):
        forbid = compile_expr(spec.forbid, at("forbid"), sc)
    return Rule(spec.id, spec.text, tuple(spec.tools) if spec.tools is not None else None,
                compile_expr(spec.when, at("when"), sc) if spec.when else None,
                compile_expr(spec.require, at("require"), sc) if spec.require else None,
                forbid, compile_expr(spec.check, at("check"), sc) if spec.check else None, spec.include_failed)


def _call_text(c: Mapping[str, Any]) -> str:
    args = c["args"] if isinstance(c["args"], dict) else {}
    return f"{c['tool']}({', '.join(f'{k}={show(v, 30)}' for k, v in args.items())})"


def check_rules(rules: Sequence[Rule], calls: list[dict[str, Any]], g: GradeInput,
                constants: Mapping[str, Any], answer: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    world = EpisodeWorld(g.world_before) if g.world_before is not None else None
    for r in rules:
        bad: list[str] = []
        ctx = Ctx({**constants, "calls": calls, "answer": answer, "params": g.task.data.get("params", {})}, world)
        try:
            if r.check is not None:
                if not r.check(ctx):
                    bad.append(r.text)
            else:
                for c in calls:
                    if r.tools is not None and c["tool"] not in r.tools:
                        continue
                    if not c["ok"] and not r.include_failed:
                        continue
                    ctx.vars.update(call=c, before=calls[: c["index"]], after=calls[c["index"] + 1:])
                    if r.when is not None and not r.when(ctx):
                        continue
                    if r.require is not None and not r.require(ctx):
                        bad.append(f"{_call_text(c)}: {r.text}")
                    elif r.forbid is True or (isinstance(r.forbid, Expr) and r.forbid(ctx)):
                        bad.append(f"{_call_text(c)}: {r.text}")
        except ExprError as e:
            bad.append(f"the rule could not be checked ({e.detail}); counted as broken")
        out[r.id] = {"ok": not bad, "violations": bad[:10]}
    return out


# ------------------------------------------------------------------ the answer
_NUMBER = re.compile(r"^[+-]?\$?\s*[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?%?$")


def answer_blocks(text: str, answer_format: str | None) -> list[str]:
    if not answer_format or "{answer}" not in answer_format:
        return [text.strip()] if text.strip() else []
    prefix, suffix = answer_format.split("{answer}", 1)
    pattern = re.escape(prefix) + (r"(.*?)" + re.escape(suffix) if suffix else r"(.*)")
    return [m.group(1).strip() for m in re.finditer(pattern, text, re.DOTALL)]


def _number(s: str) -> float | None:
    t = s.strip().replace(" ", "")
    if not t or not _NUMBER.match(t) or not re.search(r"\d", t):
        return None
    neg = t.startswith("-") or "$-" in t
    t = t.replace("$", "").replace(",", "").replace("%", "").lstrip("+-")
    try:
        v = float(t)
    except ValueError:
        return None
    return -v if neg else v


def _norm(s: str) -> str:
    return " ".join(s.casefold().split()).strip(" .")


def check_answer(expected: Mapping[str, Any], final: str, answer_format: str | None) -> dict[str, Any]:
    blocks = answer_blocks(final, answer_format)
    want = expected["value"]
    if not blocks:
        where = f" in the form {answer_format}" if answer_format else ""
        return {"ok": False, "expected": want, "got": None, "why": f"no final answer{where}"}
    number = expected.get("kind") == "number"
    distinct = list(dict.fromkeys((_number(b) if number and _number(b) is not None else _norm(b)) for b in blocks))
    if len(distinct) > 1:
        return {"ok": False, "expected": want, "got": blocks, "why": "several different answers"}
    got = blocks[-1]
    if expected.get("kind") == "number":
        v = _number(got)
        tol = float(expected.get("tol") or 0)
        ok = v is not None and abs(v - float(want)) <= tol + 1e-9
        why = "" if ok else ("not a number" if v is None else f"{v!r} is not within {tol:g} of {want!r}")
    else:
        ok = _norm(got) == _norm(str(want))
        why = "" if ok else f"{got!r} is not {want!r}"
    return {"ok": ok, "expected": want, "got": got, "why": why}


# ------------------------------------------------------------------ the grader
class DeclarativeGrader:
    """The state, rules and answer layers (module docstring); a rubric judge may be added beside it."""

    name = "declarative"
    weight = 1.0

    def __init__(self, rules: Mapping[str, Rule], tools: Mapping[str, Tool], constants: Mapping[str, Any],
                 answer_format: str | None) -> None:
        self.rules, self.tools, self.constants, self.answer_format = dict(rules), tools, dict(constants), answer_format

    def grade(self, g: GradeInput) -> Score:
        if g.world_before is None or g.world_after is None:
            raise ValueError("a declarative task is graded on the worlds before and after")
        data = g.task.data
        state = grade_state_diff(g.world_before, g.world_after, state_spec(data["expect"]))
        calls = trace(g.messages, self.tools)
        rules = check_rules([self.rules[r] for r in data.get("rules", []) if r in self.rules], calls, g,
                            self.constants, g.final)
        rules_ok = all(r["ok"] for r in rules.values())
        value = state.value * (1.0 if rules_ok else 0.0)
        passed = bool(state.passed) and rules_ok
        breakdown: dict[str, Any] = {"state": state.to_dict(), "rules": rules}
        why = [f"state: {state.explanation}"]
        broken = [v for r in rules.values() for v in r["violations"]]
        why.append("rules: " + ("all hold" if not broken else "; ".join(broken[:3])))
        if data.get("answer") is not None:
            ans = check_answer(data["answer"], g.final, self.answer_format)
            breakdown["answer"] = ans
            value *= 1.0 if ans["ok"] else 0.0
            passed = passed and ans["ok"]
            why.append("answer: " + ("right" if ans["ok"] else ans["why"]))
        return Score(min(1.0, max(0.0, value)), breakdown, " | ".join(why), passed)


__all__ = ["DeclarativeGrader", "Rule", "check_answer", "check_rules", "compile_rule", "rule_scope", "state_spec",
           "trace"]
