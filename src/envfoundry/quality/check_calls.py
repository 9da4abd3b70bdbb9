"""``bad_calls``: every tool is called with what its schema allows at the edges, and with what it
does not allow.

Allowed values must never crash a tool: every member of an enum (``Literal[...]``, an ``Enum``
type), the bounds of a constrained number, 0 and negatives where allowed, the empty string, the
shortest and longest allowed string, the empty list, null where optional. A tool may refuse any of
them with a :class:`~envfoundry.core.errors.ToolError` (the agent reads why); any other exception is
an environment bug. Disallowed calls (unknown tool, garbled JSON, a missing argument, a wrong type)
must come back as an error observation that names what was wrong.

Each call is made on a fresh episode of a task; when the reference solution calls the tool, its
arguments are the base that one argument at a time is varied from (so ids are real and the edge
value reaches the code behind them), else the schema's defaults and small valid values are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..core.env import Environment
from ..core.messages import Message, ToolCall
from ..core.seeding import derive_seed
from ..core.task import Task
from ..policies.scripted import OraclePolicy
from .check_base import CheckResult, crash_text, of, play, short

MAX_ENUM = 256  # enum members tried per argument
_BIG = 10**12


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**defs.get(ref.split("/")[-1], {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]] | None:
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return schema[key]
    if isinstance(schema.get("type"), list):
        return [{**schema, "type": t} for t in schema["type"]]
    return None


def _in_bounds(v: float, s: dict[str, Any]) -> bool:
    lo, hi = s.get("minimum"), s.get("maximum")
    xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    step = s.get("multipleOf")
    return ((lo is None or v >= lo) and (hi is None or v <= hi) and (xlo is None or v > xlo)
            and (xhi is None or v < xhi) and (not step or float(v / step).is_integer()))


def _len_ok(n: int, s: dict[str, Any], lo: str, hi: str) -> bool:
    return n >= s.get(lo, 0) and (s.get(hi) is None or n <= s[hi])


def edge_values(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> list[Any]:
    """Values the schema allows that code often gets wrong: enum members, bounds, empties."""
    s = _resolve(schema, defs)
    if "enum" in s:
        return list(s["enum"])[:MAX_ENUM]
    if "const" in s:
        return [s["const"]]
    branches = _branches(s)
    if branches is not None:
        out: list[Any] = []
        for b in branches:
            out += edge_values(b, defs, depth + 1)
        return _unique(out)
    t = s.get("type")
    if t in ("integer", "number"):
        lo = s.get("minimum", s.get("exclusiveMinimum"))
        hi = s.get("maximum", s.get("exclusiveMaximum"))
        cands: list[Any] = [0, 1, -1, _BIG, -_BIG] if t == "integer" else [0.0, 0.5, -1.5, 1e12, -1e12]
        for b, d in ((lo, 1), (hi, -1)):
            if b is not None:
                cands += [b, b + d] if t == "integer" else [b, b + d * 1e-6]
        return _unique([v for v in cands if _in_bounds(v, s)])
    if t == "string":
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        cands = ["", " ", "x" * lo, "x" * min(hi or 2000, 10_000), "'; DROP TABLE x; --", "é ✓ \u200b", "\n"]
        pat = s.get("pattern")
        return _unique([v for v in cands if _len_ok(len(v), s, "minLength", "maxLength")
                        and (pat is None or re.search(pat, v))])
    if t == "boolean":
        return [True, False]
    if t == "null":
        return [None]
    if t == "array":
        item = s.get("items", {})
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        cands = [[], [base_value(item, defs)] * max(lo, 1)]
        if hi is not None:
            cands.append([base_value(item, defs)] * hi)
        if depth < 2 and isinstance(item, dict):
            cands += [[v] * max(lo, 1) for v in edge_values(item, defs, depth + 1)[:MAX_ENUM]]
        if "prefixItems" in s:
            cands = [[base_value(x, defs) for x in s["prefixItems"]]]
        return _unique([v for v in cands if _len_ok(len(v), s, "minItems", "maxItems")])
    if t == "object" or "properties" in s:
        base = base_value(s, defs)
        out = [base]
        if depth < 2:
            for k, sub in s.get("properties", {}).items():
                out += [{**base, k: v} for v in edge_values(sub, defs, depth + 1)]
        return _unique(out)
    return []


def base_value(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """One ordinary value the schema allows (its default when it has one)."""
    s = _resolve(schema, defs)
    if "default" in s:
        return s["default"]
    if "enum" in s:
        return s["enum"][0] if s["enum"] else None
    if "const" in s:
        return s["const"]
    branches = _branches(s)
    if branches is not None:
        useful = [b for b in branches if _resolve(b, defs).get("type") != "null"] or branches
        return base_value(useful[0], defs) if useful else None
    t = s.get("type")
    if t in ("integer", "number"):
        ok = [v for v in (1, 2, 0, s.get("minimum"), s.get("maximum")) if v is not None and _in_bounds(v, s)]
        return ok[0] if ok else s.get("minimum", 1)
    if t == "string":
        return "x" * max(1, s.get("minLength", 0))
    if t == "boolean":
        return False
    if t == "array":
        if "prefixItems" in s:
            return [base_value(x, defs) for x in s["prefixItems"]]
        return [base_value(s.get("items", {}), defs)] * s.get("minItems", 0)
    if t == "object" or "properties" in s:
        return {k: base_value(v, defs) for k, v in s.get("properties", {}).items() if k in s.get("required", [])}
    return None


def _unique(values: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(json.dumps(v, sort_keys=True, default=str) + type(v).__name__, v)
    return list(seen.values())


def _reference_calls(env: Environment, tasks: Sequence[Task], seed: int) -> dict[str, tuple[Task, dict[str, Any]]]:
    """For each tool the reference solution calls: a task and the arguments of its first call."""
    found: dict[str, tuple[Task, dict[str, Any]]] = {}
    if not env.has_reference:
        return found
    for t in tasks[:3]:
        p = play(env, t, derive_seed(seed, "bad_calls", t.id), OraclePolicy())
        for m in p.ep.messages:
            for c in m.tool_calls:
                args = c.arguments
                if isinstance(args, str):
                    try:
                        args = json.loads(args or "{}")
                    except json.JSONDecodeError:
                        continue
                if isinstance(args, dict) and c.name in env.tools and c.name not in found:
                    found[c.name] = (t, args)
    return found


def bad_calls(env: Environment, tasks: Sequence[Task], seed: int) -> CheckResult:
    name = "bad_calls"
    if not env.tools:
        return CheckResult(name, "skipped", "the environment has no tools")
    ref = _reference_calls(env, tasks, seed)
    # (kind, task, call, what the error must name, the argument varied)
    probes: list[tuple[str, Task, ToolCall, str | None, str | None]] = [
        ("unknown tool", tasks[0], ToolCall("no_such_tool_x", {}), "no_such_tool_x", None)
    ]
    n_edge = 0
    for tl in env.tools.values():
        params = tl.schema()["function"]["parameters"]
        props, required, defs = params.get("properties", {}), params.get("required", []), params.get("$defs", {})
        task, base = ref.get(tl.name, (tasks[0], None))
        if base is None:
            base = {a: base_value(props[a], defs) for a in required if a in props}
        probes.append(("garbled JSON", task, ToolCall(tl.name, '{"oops": '), tl.name, None))
        if required:
            probes.append(("missing argument", task, ToolCall(tl.name, {}), required[0], None))
        seen: set[str] = set()
        for arg, sch in props.items():
            if _resolve(sch, defs).get("type") in ("integer", "number"):
                probes.append(("wrong type", task, ToolCall(tl.name, {**base, arg: "not a number"}), arg, arg))
            for v in [base.get(arg, base_value(sch, defs)), *edge_values(sch, defs)]:
                args = {**base, arg: v}
                key = json.dumps(args, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    probes.append(("allowed value", task, ToolCall(tl.name, args), None, arg))
                    n_edge += 1
    crashes: list[tuple[Task, ToolCall, str, str | None]] = []
    unclear: list[tuple[Task, ToolCall, str]] = []
    for kind, task, call, must_name, focus in probes:
        ep = env.reset(task, seed=seed)
        try:
            res = ep.step(Message("assistant", "", [call]))
        except Exception as e:  # noqa: BLE001 - this is what the check looks for
            crashes.append((task, call, f"{kind}: {crash_text(e)}", focus))
            continue
        text = res.observation[0].content if res.observation else ""
        if must_name and must_name not in text:
            unclear.append((task, call, f"{kind}: the error does not name {must_name!r}: {text[:200]!r}"))
    if crashes:
        tools = list(dict.fromkeys(c.name for _, c, _, _ in crashes))
        eg = []
        for tname in tools[:3]:
            task, call, why, focus = next(x for x in crashes if x[1].name == tname)
            also = [short(repr(c.arguments[focus]), 30) for _, c, _, f in crashes
                    if c.name == tname and f == focus and c is not call and isinstance(c.arguments, dict)]
            more = f" (also {focus}={', '.join(also[:4])}{', ...' if len(also) > 4 else ''})" if also else ""
            eg.append(f"{tname}({_args(call, focus)}) raised {why.split(': ', 1)[1]}{more}")
        detail = (f"{of(len(crashes), len(probes), 'calls')} crashed (an exception other than ToolError) in "
                  f"{of(len(tools), len(env.tools), 'tools')} ({', '.join(tools)}), e.g. " + "; ".join(eg))
        return CheckResult(name, "fail", detail[:900], crashes[0][0].id,
                           {"calls": [{"tool": c.name, "arguments": c.arguments, "error": w}
                                      for _, c, w, _ in crashes[:5]]})
    if unclear:
        task, call, why = unclear[0]
        return CheckResult(name, "fail", f"{of(len(unclear), len(probes), 'bad calls')} got an unclear error, "
                           f"e.g. {why}", task.id, {"call": call.to_dict()})
    based = f", from the reference solution's arguments for {len(ref)}" if ref else ""
    return CheckResult(name, "pass", f"{len(probes)} calls to {len(env.tools)} tools answered without a crash "
                       f"({n_edge} with allowed edge values: every enum member, bounds, empties{based})")


def _args(call: ToolCall, focus: str | None) -> str:
    """``status='cancelled'`` for the argument a call varied, ``...`` for the others."""
    a = call.arguments
    if not isinstance(a, dict):
        return short(a, 60)
    shown = [f"{k}={short(repr(v), 60)}" for k, v in a.items() if focus is None or k == focus]
    return ", ".join(shown + (["..."] if focus is not None and len(a) > 1 else []))
