"""Tools from ``environment.yaml``: typed operations on the episode's world.

Each tool becomes an ordinary :class:`envfoundry.Tool` whose arguments are validated by a pydantic
model built from its ``params``. A call evaluates its ``let`` values, checks its ``requires`` in
order (the first that fails is the agent's error and nothing changes), then runs its operation:

- ``lookup``: the rows of a table that ``match`` (column = value; a null value matches anything;
  text ignoring case and surrounding spaces) and satisfy ``where``; ``{"count": n, "rows": [...]}``;
- ``get``: one row by key (or the ``missing`` error);
- ``compute``: any value (sums and balances by filter, a statement with its lines...);
- ``calculator``: the agent's arithmetic (numbers, + - * / // %, parentheses, abs, round, min...);
- ``do``: effects (insert, update, delete) on the tables the tool declares in ``writes``, all or
  nothing: columns are type-checked and ``ref`` columns must name existing rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..core.env import Episode
from ..core.errors import ToolError
from ..core.tools import Tool
from .context import Ctx, Scope, suggest, table_type
from .errors import DeclarativeError, ExprError, Loc
from .expr import compile_expr
from .functions import show
from .generator import check_new_name
from .models import DeleteEffect, InsertEffect, ToolSpec, UpdateEffect
from .source import LDict, LList
from .tables import NO_DEFAULT, Column, Table, TypeMismatch, column_of, key_text
from .values import Value, compile_template, compile_value, plain
from .worlds import EpisodeWorld

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _line(raw: Any, key: str | int, default: Loc) -> Loc:
    if isinstance(raw, LDict) and isinstance(key, str) and key in raw.lines:
        return raw.at(key)
    if isinstance(raw, LList) and isinstance(key, int):
        return raw.at(key)
    return default


def param_field(c: Column) -> tuple[Any, Any]:
    """The pydantic (annotation, default) of a parameter."""
    base: Any
    extra: dict[str, Any] = {}
    if c.type == "string":
        base = str
    elif c.type == "integer":
        base = int
    elif c.type == "number":
        base = float
        extra["allow_inf_nan"] = False
    elif c.type == "boolean":
        base = bool
    elif c.type == "date":
        base = str
        extra["pattern"] = DATE_PATTERN
    elif c.type == "enum":
        base = Literal[tuple(c.values)]  # type: ignore[valid-type]
    elif c.type == "list":
        base = list[Any]
    elif c.type == "record":
        base = dict[str, Any]
    else:
        base = Any
    if c.low is not None:
        extra["ge"] = c.low
    if c.high is not None:
        extra["le"] = c.high
    ann: Any = Annotated[base, Field(**extra)] if extra else base
    if c.nullable:
        return ann | None, (None if c.default is NO_DEFAULT else c.default)
    if c.default is not NO_DEFAULT:
        return ann, c.default
    return ann, ...


_TYPE_WORDS = {"string": "str", "integer": "int", "number": "number", "boolean": "bool", "date": "date",
               "enum": "enum", "list": "list", "record": "object", "any": "any"}


def args_model(tool: str, params: Mapping[str, Column], descriptions: Mapping[str, str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, c in params.items():
        ann, default = param_field(c)
        desc = descriptions.get(name) or None
        if c.type == "date":
            desc = ((desc + " ") if desc else "") + "(a date, YYYY-MM-DD)"
        fields[name] = (ann, Field(default, description=desc) if desc else default)
    return create_model(f"{tool}_args", __base__=_Args, **fields)


class _Calls:
    """Counts an episode's tool calls against ``max_tool_calls``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    def check(self, ep: Episode) -> None:
        if self.limit is not None and ep.tool_calls > self.limit:
            raise ToolError(f"the tool-call budget of this task ({self.limit} calls) is spent; give your answer")


def _dump(obj: Any, limit: int) -> str:
    text = obj if isinstance(obj, str) else json.dumps(plain(obj), ensure_ascii=False, default=str)
    if len(text) > limit:
        return text[:limit] + f" ... [cut: the result is {len(text)} characters; narrow the request]"
    return text


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) < 1e-9
    return a == b


class ToolBuilder:
    """Compiles the tools of an environment file against its tables and constants."""

    def __init__(self, tables: dict[str, Table], constants: Mapping[str, Any], *, max_tool_calls: int | None,
                 max_result_chars: int) -> None:
        self.tables = tables
        self.constants = dict(constants)
        self.calls = _Calls(max_tool_calls)
        self.max_chars = max_result_chars

    def scope(self, names: Mapping[str, Any], where: str) -> Scope:
        return Scope({**{k: None for k in self.constants}, **names},
                     {t.name: frozenset(t.columns) for t in self.tables.values()}, random=False, world=True,
                     where=where)

    def table(self, name: str, loc: Loc) -> Table:
        t = self.tables.get(name)
        if t is None:
            raise DeclarativeError(loc, f"unknown table {name!r}{suggest(name, self.tables)} "
                                   f"(tables: {', '.join(self.tables)})")
        return t

    def column(self, t: Table, c: str, loc: Loc) -> Column:
        col = t.columns.get(c)
        if col is None:
            raise DeclarativeError(loc, f"table {t.name!r} has no column {c!r}{suggest(c, t.columns)} "
                                   f"(columns: {', '.join(t.columns)})")
        return col

    # ------------------------------------------------------------ one tool
    def build(self, name: str, spec: ToolSpec, loc: Loc) -> Tool:
        check_new_name(name, loc, self.scope({}, ""), "tool name")
        where = f"in tool {name!r}"
        praw = spec.raw("params")
        params: dict[str, Column] = {}
        descriptions: dict[str, str] = {}
        for p, ps in spec.params.items():
            ploc = _line(praw, p, spec.at("params"))
            check_new_name(p, ploc, self.scope({}, ""), "parameter")
            if p in self.constants:
                raise DeclarativeError(ploc, f"parameter {p!r} has the name of a constant")
            params[p] = column_of(p, ps, ploc)
            descriptions[p] = getattr(ps, "description", "") or ""
        if spec.calculator:
            if params:
                raise DeclarativeError(spec.at("params"), f"tool {name!r}: a calculator takes one argument, "
                                       "`expression`, and declares no params")
            params = {"expression": Column("expression", "string", loc=loc)}
            descriptions = {"expression": "arithmetic, e.g. (1250000 * 0.015) / 365 * 31"}
        scope = self.scope({p: None for p in params}, where)
        lets: list[tuple[str, Value]] = []
        lraw = spec.raw("let")
        for ln, lv in spec.let.items():
            lloc = _line(lraw, ln, spec.at("let"))
            check_new_name(ln, lloc, scope)
            if ln in params:
                raise DeclarativeError(lloc, f"let {ln!r} has the name of a parameter")
            val = compile_value(lv, lloc, scope)
            scope.names[ln] = val.type
            lets.append((ln, val))
        rraw = spec.raw("requires")
        checks = []
        for i, chk in enumerate(spec.requires):
            craw = rraw[i] if isinstance(rraw, LList) else None
            cloc = _line(rraw, i, spec.at("requires"))
            checks.append((compile_expr(chk.check, _line(craw, "check", cloc), scope),
                           compile_template(chk.error, _line(craw, "error", cloc), scope)))
        run, writes = self._operation(name, spec, scope, loc)
        model = args_model(name, params, descriptions)
        arg_types = {p: _TYPE_WORDS[c.type] for p, c in params.items()}
        constants, calls, limit = self.constants, self.calls, self.max_chars

        def fn(ep: Episode, **kwargs: Any) -> str:
            calls.check(ep)
            assert ep.world is not None
            ctx = Ctx({**constants, **kwargs}, EpisodeWorld(ep.world))
            try:
                for ln, lv in lets:
                    ctx.vars[ln] = lv(ctx)
                for cond, err in checks:
                    if not cond(ctx):
                        raise ToolError(err(ctx))
                return _dump(run(ep, ctx), limit)
            except ExprError as e:
                raise ToolError(f"{name}: {e.detail}") from None
            except TypeMismatch as e:
                raise ToolError(f"{name}: {e}") from None

        fn.__name__ = name
        return Tool(name, fn, spec.description.strip(), writes, model, arg_types)

    def _operation(self, name: str, spec: ToolSpec, scope: Scope, loc: Loc) -> tuple[Any, bool]:
        if spec.writes and not spec.do:
            raise DeclarativeError(spec.at("writes"), f"tool {name!r} declares writes but has no `do` effects")
        if spec.returns is not None and not spec.do:
            raise DeclarativeError(spec.at("returns"), f"tool {name!r}: `returns` belongs to a `do` tool; a "
                                   "lookup, get or compute tool returns what it finds")
        if spec.lookup is not None:
            return self._lookup(spec, scope), False
        if spec.get is not None:
            return self._get(spec, scope), False
        if spec.calculator:
            return self._calculator(name), False
        if spec.do:
            return self._do(name, spec, scope), True
        val = compile_value(spec.compute, spec.at("compute"), scope)
        return (lambda ep, ctx: val(ctx)), False

    def _lookup(self, spec: ToolSpec, scope: Scope) -> Any:
        lk = spec.lookup
        assert lk is not None
        raw = spec.raw("lookup")
        t = self.table(lk.table, _line(raw, "table", spec.at("lookup")))
        mraw = raw.get("match") if isinstance(raw, LDict) else None
        match = []
        for c, e in lk.match.items():
            self.column(t, c, _line(mraw, c, spec.at("lookup")))
            match.append((c, compile_expr(e, _line(mraw, c, spec.at("lookup")), scope)))
        rt = table_type(t.name, t.columns)
        inner = scope.with_names({"row": rt, "it": rt, "i": None})
        where = compile_expr(lk.where, _line(raw, "where", spec.at("lookup")), inner) if lk.where else None
        fields = self._fields(t, lk.fields, raw, spec)
        order = [lk.order_by] if isinstance(lk.order_by, str) else list(lk.order_by or [])
        for o in order:
            self.column(t, o.lstrip("-"), _line(raw, "order_by", spec.at("lookup")))
        limit = lk.limit

        def run(ep: Episode, ctx: Ctx) -> Any:
            wanted = [(c, e(ctx)) for c, e in match]
            wanted = [(c, v) for c, v in wanted if v is not None]
            rows = []
            world = ctx.world
            assert world is not None
            saved = {k: ctx.vars.get(k) for k in ("row", "it")}
            try:
                for r in world.rows(t.name):
                    if not all(_same(r.get(c), v) for c, v in wanted):
                        continue
                    if where is not None:
                        ctx.vars["row"] = ctx.vars["it"] = r
                        if not where(ctx):
                            continue
                    rows.append(r)
            finally:
                ctx.vars.update(saved)
            for o in reversed(order):
                col, desc = o.lstrip("-"), o.startswith("-")
                rows.sort(key=lambda r, c=col: (r.get(c) is None, r.get(c) if r.get(c) is not None else 0),
                          reverse=desc)
            out: dict[str, Any] = {"count": len(rows), "rows": [_project(r, fields) for r in rows[:limit]]}
            if len(rows) > limit:
                out["note"] = f"showing the first {limit} of {len(rows)} rows; narrow the filter"
            return out
        return run

    def _fields(self, t: Table, fields: list[str] | None, raw: Any, spec: ToolSpec) -> list[str] | None:
        for f in fields or []:
            self.column(t, f, _line(raw, "fields", spec.at()))
        return fields

    def _get(self, spec: ToolSpec, scope: Scope) -> Any:
        g = spec.get
        assert g is not None
        raw = spec.raw("get")
        t = self.table(g.table, _line(raw, "table", spec.at("get")))
        key = compile_expr(g.key, _line(raw, "key", spec.at("get")), scope)
        missing = compile_template(g.missing, _line(raw, "missing", spec.at("get")), scope) if g.missing else None
        fields = self._fields(t, g.fields, raw, spec)

        def run(ep: Episode, ctx: Ctx) -> Any:
            k = key(ctx)
            row = None
            if k is not None:
                try:
                    row = ctx.world.get(t.name, key_text(k)) if ctx.world is not None else None
                except TypeMismatch:
                    row = None
            if row is None:
                raise ToolError(missing(ctx) if missing is not None else f"no {t.name} row with key {show(k)}")
            return _project(row, fields)
        return run

    def _calculator(self, name: str) -> Any:
        calc = Scope({}, {}, calculator=True, world=False)

        def run(ep: Episode, ctx: Ctx) -> Any:
            src = str(ctx.vars["expression"]).replace(",", "").replace("$", "").strip()
            try:
                e = compile_expr(src, Loc("calculation"), calc)
            except DeclarativeError as err:
                raise ToolError(f"{name}: {err.detail}") from None
            v = e(Ctx())
            if isinstance(v, float):
                if not math.isfinite(v):
                    raise ToolError(f"{name}: the result is not a finite number")
                v = round(v, 10)
            return {"expression": src, "result": v}
        return run

    def _do(self, name: str, spec: ToolSpec, scope: Scope) -> Any:
        wraw = spec.raw("writes")
        declared = []
        for i, w in enumerate(spec.writes):
            t = self.table(w, _line(wraw, i, spec.at("writes")))
            if t.readonly:
                raise DeclarativeError(_line(wraw, i, spec.at("writes")), f"tool {name!r} writes table {w!r}, "
                                       "which is readonly")
            declared.append(w)
        draw = spec.raw("do")
        effects = []
        for i, eff in enumerate(spec.do):
            eraw = draw[i] if isinstance(draw, LList) else None
            eloc = _line(draw, i, spec.at("do"))
            tname = eff.insert if isinstance(eff, InsertEffect) else (
                eff.update if isinstance(eff, UpdateEffect) else eff.delete)
            t = self.table(tname, eloc)
            if tname not in declared:
                raise DeclarativeError(eloc, f"tool {name!r} writes table {tname!r} but does not declare it: "
                                       f"add it to `writes` (writes: {', '.join(declared) or 'none'})")
            when = compile_expr(eff.when, _line(eraw, "when", eloc), scope) if eff.when else None
            if isinstance(eff, InsertEffect):
                vraw = eraw.get("values") if isinstance(eraw, LDict) else None
                for c in eff.values:
                    self.column(t, c, _line(vraw, c, eloc))
                missing = [c.name for c in t.columns.values() if c.required and c.name not in eff.values]
                if missing and not (eff.key and missing == [t.key]):
                    raise DeclarativeError(eloc, f"tool {name!r}: rows of table {t.name!r} need a value for column(s) "
                                           f"{', '.join(map(repr, missing))}")
                vals = [(c, compile_value(v, _line(vraw, c, eloc), scope)) for c, v in eff.values.items()]
                key = compile_expr(eff.key, _line(eraw, "key", eloc), scope) if eff.key else None
                if eff.as_:
                    check_new_name(eff.as_, _line(eraw, "as", eloc), scope)
                    scope.names[eff.as_] = None
                effects.append(("insert", t, when, vals, key, eff.as_))
            elif isinstance(eff, UpdateEffect):
                sraw = eraw.get("set") if isinstance(eraw, LDict) else None
                for c in eff.set:
                    self.column(t, c, _line(sraw, c, eloc))
                    if c == t.key:
                        raise DeclarativeError(_line(sraw, c, eloc), f"tool {name!r}: the key column {c!r} cannot "
                                               "be updated; delete the row and insert a new one")
                vals = [(c, compile_value(v, _line(sraw, c, eloc), scope)) for c, v in eff.set.items()]
                key = compile_expr(eff.key, _line(eraw, "key", eloc), scope)
                effects.append(("update", t, when, vals, key, None))
            else:
                assert isinstance(eff, DeleteEffect)
                key = compile_expr(eff.key, _line(eraw, "key", eloc), scope)
                effects.append(("delete", t, when, [], key, None))
        rraw = spec.raw("returns")
        returns: Any
        if isinstance(spec.returns, str) and not spec.returns.startswith("="):
            returns = compile_template(spec.returns, spec.at("returns") if rraw is not None else spec.at(), scope)
        elif spec.returns is not None:
            returns = compile_value(spec.returns, spec.at("returns"), scope)
        else:
            returns = None
        tables = self.tables

        def run(ep: Episode, ctx: Ctx) -> Any:
            assert ep.world is not None
            scratch = ep.world.fork()
            ctx.world = EpisodeWorld(scratch)
            done = []
            for kind, t, when, vals, key, as_ in effects:
                if when is not None and not when(ctx):
                    continue
                values = {c: plain(v(ctx)) for c, v in vals}
                if kind == "insert":
                    if key is not None:
                        values.setdefault(t.key, key(ctx))
                    row = t.row(values, where=f"insert into {t.name}")
                    k = key_text(key(ctx)) if key is not None else t.key_of(row)
                    if scratch.get(t.name, k) is not None:
                        raise ToolError(f"{t.name} {k!r} already exists")
                    _check_refs(tables, t, row, scratch)
                    scratch.insert(t.name, k, row)
                    done.append(f"inserted {t.name} {k}")
                    if as_:
                        ctx.vars[as_] = k
                else:
                    k = key_text(key(ctx))
                    cur = scratch.get(t.name, k)
                    if cur is None:
                        raise ToolError(f"there is no {t.name} row {k!r}")
                    if kind == "update":
                        new = t.row(values, where=f"update of {t.name} {k}", partial=True)
                        _check_refs(tables, t, new, scratch)
                        scratch.update(t.name, k, **new)
                        done.append(f"updated {t.name} {k}")
                    else:
                        scratch.delete(t.name, k)
                        done.append(f"deleted {t.name} {k}")
            changes = ep.world.diff(scratch)
            ep.world.apply(changes)
            ctx.world = EpisodeWorld(ep.world)
            if returns is None:
                return "; ".join(done) if done else "nothing to change"
            out = returns(ctx)
            return out if isinstance(out, str) else plain(out)
        return run

    def policy_tool(self, name: str, text: str, description: str, loc: Loc) -> Tool:
        check_new_name(name, loc, self.scope({}, ""), "tool name")
        limit = self.max_chars
        calls = self.calls

        def fn(ep: Episode) -> str:
            calls.check(ep)
            return _dump(text, max(limit, len(text)))

        fn.__name__ = name
        return Tool(name, fn, description, False, create_model(f"{name}_args", __base__=_Args), {})


def _project(row: Mapping[str, Any], fields: list[str] | None) -> dict[str, Any]:
    return {k: plain(row.get(k)) for k in fields} if fields else plain(dict(row))


def _check_refs(tables: Mapping[str, Table], t: Table, row: Mapping[str, Any], world: Any) -> None:
    for c, v in row.items():
        col = t.columns[c]
        if col.ref is not None and v is not None and world.get(col.ref, key_text(v)) is None:
            raise ToolError(f"{c} {v!r} is not a row of {col.ref}")


__all__ = ["DATE_PATTERN", "ToolBuilder", "args_model"]
