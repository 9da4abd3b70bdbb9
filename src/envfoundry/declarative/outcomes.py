"""A task type's expected outcome, expected answer and reference solution, compiled.

Each is evaluated once, when a task is made, into plain data stored in the task's private ``data``
(``expect``, ``answer``, ``solution``): the grader and the reference solution read only that, so a
task is graded the same way in any process.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..core.errors import ToolCallError
from ..core.tools import Tool
from .context import Ctx, ListType, Scope, suggest
from .errors import DeclarativeError, ExprError, Loc
from .expr import compile_expr
from .functions import is_num, show
from .source import LDict, LList
from .tables import Table, key_text
from .task_models import AnswerSpec, AnswerStep, CallStep, DeleteReq, ExpectSpec, InsertReq, SayStep, UpdateReq
from .values import compile_template, compile_value, is_expr, plain

PRED_OPS = ("approx", "one_of", "ge", "gt", "le", "lt", "ne", "between", "contains", "any")
Build = Callable[[Ctx], Any]


def _line(raw: Any, key: str | int, default: Loc) -> Loc:
    if isinstance(raw, LDict) and isinstance(key, str) and key in raw.lines:
        return raw.at(key)
    if isinstance(raw, LList) and isinstance(key, int) and 0 <= key < len(raw):
        return raw.at(key)
    return default


def _table(tables: Mapping[str, Table], name: str, loc: Loc) -> Table:
    t = tables.get(name)
    if t is None:
        raise DeclarativeError(loc, f"unknown table {name!r}{suggest(name, tables)} (tables: {', '.join(tables)})")
    return t


def _column(t: Table, c: str, loc: Loc) -> None:
    if c not in t.columns:
        raise DeclarativeError(loc, f"table {t.name!r} has no column {c!r}{suggest(c, t.columns)} "
                               f"(columns: {', '.join(t.columns)})")


def _with_items(for_each: str | None, when: str | None, raw: Any, loc: Loc, scope: Scope,
                body: Callable[[Scope], Build]) -> Build:
    """``body`` once (or once per item of ``for_each``, bound to it/i), where ``when`` holds; a list of results."""
    items = compile_expr(for_each, _line(raw, "for_each", loc), scope) if for_each else None
    item_type = items.type.item if items is not None and isinstance(items.type, ListType) else None
    inner = scope.with_names({"it": item_type, "row": item_type, "i": None}) if items is not None else scope
    cond = compile_expr(when, _line(raw, "when", loc), inner) if when else None
    make = body(inner)

    def build(ctx: Ctx) -> list[Any]:
        if items is None:
            return [make(ctx)] if cond is None or cond(ctx) else []
        seq = items(ctx)
        if not isinstance(seq, list):
            raise ExprError(f"for_each needs a list, got {show(seq)}", items.loc, items.src)
        saved = {k: ctx.vars[k] for k in ("it", "row", "i") if k in ctx.vars}
        out = []
        try:
            for i, it in enumerate(seq):
                ctx.vars["it"] = ctx.vars["row"] = it
                ctx.vars["i"] = i
                if cond is None or cond(ctx):
                    out.append(make(ctx))
        finally:
            for k in ("it", "row", "i"):
                ctx.vars.pop(k, None)
            ctx.vars.update(saved)
        return out
    return build


# ------------------------------------------------------------------ predicates
def compile_pred(raw: Any, loc: Loc, scope: Scope) -> Build:
    """A field predicate: a value (equality) or one mapping ``{approx: x, tol: t}``, ``{one_of: [...]}``..."""
    if isinstance(raw, Mapping) and not is_expr(raw):
        keys = set(raw)
        ops = keys & set(PRED_OPS)
        if len(ops) != 1 or keys - ops - ({"tol"} if ops == {"approx"} else set()):
            raise DeclarativeError(loc, f"a field predicate is a value or one of {', '.join(PRED_OPS)} "
                                   f"(approx takes tol), got keys {', '.join(sorted(map(str, keys)))}")
        op = ops.pop()
        val = compile_value(raw[op], _line(raw, op, loc), scope)
        tol = compile_value(raw.get("tol", 0), _line(raw, "tol", loc), scope)

        def build(ctx: Ctx) -> dict[str, Any]:
            v = plain(val(ctx))
            if op == "approx":
                t = tol(ctx)
                if not is_num(v) or not is_num(t) or t < 0:
                    raise ExprError(f"approx needs a number and a tol >= 0, got {show(v)} and {show(t)}")
                return {"op": "approx", "value": v, "tol": t}
            if op in ("one_of", "between") and not isinstance(v, list):
                raise ExprError(f"{op} needs a list, got {show(v)}")
            if op == "between" and len(v) != 2:
                raise ExprError(f"between needs [low, high], got {show(v)}")
            return {"op": op, "value": v}
        return build
    val = compile_value(raw, loc, scope)
    return lambda ctx: {"op": "eq", "value": plain(val(ctx))}


# ------------------------------------------------------------------ expected outcome
def compile_expect(spec: ExpectSpec, raw: Any, loc: Loc, scope: Scope, tables: Mapping[str, Table]) -> Build:
    rraw = raw.get("require") if isinstance(raw, LDict) else None
    reqs: list[Build] = []
    for i, r in enumerate(spec.require):
        one = rraw[i] if isinstance(rraw, LList) else None
        rloc = _line(rraw, i, loc)
        reqs.append(_requirement(r, one, rloc, scope, tables))
    patterns = []
    for kind in ("allow", "ignore"):
        praw = raw.get(kind) if isinstance(raw, LDict) else None
        for i, p in enumerate(getattr(spec, kind)):
            ploc = _line(praw, i, loc)
            if p.table is not None:
                t = _table(tables, p.table, ploc)
                if p.field is not None:
                    _column(t, p.field, ploc)
            elif p.field is not None and not any(p.field in t.columns for t in tables.values()):
                raise DeclarativeError(ploc, f"no table has a column {p.field!r}")
            patterns.append((kind, {"table": p.table, "op": p.op, "field": p.field}))
    fixed = {"partial": spec.partial, "partial_cap": spec.partial_cap, "collateral_penalty": spec.collateral_penalty,
             "allow": [p for k, p in patterns if k == "allow"], "ignore": [p for k, p in patterns if k == "ignore"]}

    def build(ctx: Ctx) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for r in reqs:
            out.extend(r(ctx))
        return {"require": out, **copy.deepcopy(fixed)}
    return build


def _requirement(r: Any, raw: Any, loc: Loc, scope: Scope, tables: Mapping[str, Table]) -> Build:
    if isinstance(r, InsertReq):
        t = _table(tables, r.insert, _line(raw, "insert", loc))
        fields, kind = r.where, "insert"
    elif isinstance(r, UpdateReq):
        t = _table(tables, r.update, _line(raw, "update", loc))
        fields, kind = r.set, "update"
    else:
        assert isinstance(r, DeleteReq)
        t = _table(tables, r.delete, _line(raw, "delete", loc))
        fields, kind = {}, "delete"
    fraw = raw.get("where" if kind == "insert" else "set") if isinstance(raw, LDict) else None
    for f in fields:
        _column(t, f, _line(fraw, f, loc))

    def body(inner: Scope) -> Build:
        preds = [(f, compile_pred(v, _line(fraw, f, loc), inner)) for f, v in fields.items()]
        key = compile_value(r.key, _line(raw, "key", loc), inner) if kind != "insert" else None
        count = compile_value(r.count, _line(raw, "count", loc), inner) if isinstance(r, InsertReq) else None
        name = compile_template(r.name, _line(raw, "name", loc), inner) if r.name else None

        def make(ctx: Ctx) -> dict[str, Any]:
            out: dict[str, Any] = {"kind": kind, "table": t.name, "weight": r.weight,
                                   "where": {f: p(ctx) for f, p in preds}}
            if key is not None:
                out["key"] = key_text(key(ctx))
            if count is not None:
                n = count(ctx)
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    raise ExprError(f"count needs a whole number >= 1, got {show(n)}")
                out["count"] = n
            out["name"] = name(ctx) if name is not None else ""
            return out
        return make
    return _with_items(r.for_each, r.when, raw, loc, scope, body)


# ------------------------------------------------------------------ expected answer
def compile_answer(spec: AnswerSpec, raw: Any, loc: Loc, scope: Scope) -> Build:
    val = compile_value(spec.value, _line(raw, "value", loc), scope)
    tol = compile_value(spec.tol, _line(raw, "tol", loc), scope) if spec.tol is not None else None

    def build(ctx: Ctx) -> dict[str, Any]:
        v = plain(val(ctx))
        t = tol(ctx) if tol is not None else None
        kind = spec.kind or ("number" if t is not None or is_num(v) else "text")
        if kind == "number" and not is_num(v):
            raise ExprError(f"a number answer needs a number, got {show(v)}")
        if t is not None and (not is_num(t) or t < 0):
            raise ExprError(f"tol needs a number >= 0, got {show(t)}")
        if kind == "text" and not isinstance(v, (str, int, float)):
            raise ExprError(f"a text answer needs text, got {show(v)}")
        return {"value": v, "tol": t if t is not None else (1e-9 if kind == "number" else None), "kind": kind}
    return build


# ------------------------------------------------------------------ reference solution
def compile_solution(steps: list[Any], raw: Any, loc: Loc, scope: Scope, tools: Mapping[str, Tool],
                     answer_format: str | None) -> Build:
    parts: list[Build] = []
    for i, st in enumerate(steps):
        one = raw[i] if isinstance(raw, LList) else None
        sloc = _line(raw, i, loc)
        if isinstance(st, CallStep):
            parts.append(_call(st, one, sloc, scope, tools))
            continue
        if i != len(steps) - 1:
            raise DeclarativeError(sloc, "an answer or say step ends the solution: it must be the last step")
        tpl = compile_template(st.answer if isinstance(st, AnswerStep) else st.say,
                               _line(one, "answer" if isinstance(st, AnswerStep) else "say", sloc), scope)
        wrap = isinstance(st, AnswerStep) and answer_format is not None

        def final(ctx: Ctx, tpl: Any = tpl, wrap: bool = wrap) -> list[dict[str, Any]]:
            text = tpl(ctx)
            return [{"text": answer_format.replace("{answer}", text) if wrap and answer_format else text}]
        parts.append(final)
    ends = bool(steps) and isinstance(steps[-1], (AnswerStep, SayStep))

    def build(ctx: Ctx) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in parts:
            out.extend(p(ctx))
        if not ends:
            out.append({"text": "Done."})
        return out
    return build


def _call(st: CallStep, raw: Any, loc: Loc, scope: Scope, tools: Mapping[str, Tool]) -> Build:
    tool = tools.get(st.call)
    if tool is None:
        raise DeclarativeError(_line(raw, "call", loc), f"the solution calls unknown tool {st.call!r}"
                               f"{suggest(st.call, tools)} (tools: {', '.join(tools)})")
    araw = raw.get("args") if isinstance(raw, LDict) else None
    props = tool.args_model.model_fields
    for a in st.args:
        if a not in props:
            raise DeclarativeError(_line(araw, a, loc), f"tool {st.call!r} has no parameter {a!r}"
                                   f"{suggest(a, props)} (parameters: {', '.join(props) or 'none'})")
    missing = [p for p, f in props.items() if f.is_required() and p not in st.args]
    if missing:
        raise DeclarativeError(loc, f"the solution's call of {st.call!r} leaves out required parameter(s) "
                               f"{', '.join(map(repr, missing))}")

    def body(inner: Scope) -> Build:
        args = [(a, compile_value(v, _line(araw, a, loc), inner)) for a, v in st.args.items()]

        def make(ctx: Ctx) -> dict[str, Any]:
            values = {a: plain(v(ctx)) for a, v in args}
            try:
                tool.parse_args(values)
            except ToolCallError as e:
                raise ExprError(f"the solution's call is not valid: {e}") from None
            return {"tool": st.call, "args": values}
        return make
    return _with_items(st.for_each, st.when, raw, loc, scope, body)


__all__ = ["PRED_OPS", "compile_answer", "compile_expect", "compile_pred", "compile_solution"]
