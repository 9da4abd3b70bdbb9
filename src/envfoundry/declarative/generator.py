"""Generator steps: ``let``, ``rows``, ``update``, ``delete`` and ``require``, compiled once and run per task.

Steps run in order against a :class:`~.worlds.DictWorld` with the task's seeded RNG; every name a
step defines is visible to the steps after it (and to the task's prompt, expectations and solution).
A failed ``require`` raises :class:`~.errors.Unsatisfied` and the task's generation starts again from
a seed derived from the next attempt (see :mod:`.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .context import Ctx, ListType, Scope, suggest, table_type
from .errors import DeclarativeError, ExprError, Loc, Unsatisfied
from .expr import compile_expr
from .models import DeleteStep, LetStep, RequireStep, RowsStep, UpdateStep
from .source import LDict, LList
from .tables import Table, TypeMismatch, key_text
from .values import Value, compile_value, plain
from .worlds import DictWorld

Run = Callable[["GenState"], None]
RESERVED = {"it", "row", "i", "outer", "call", "before", "after", "calls", "answer", "params"}


@dataclass
class GenState:
    """What steps read and write: variables, the world being built, the RNG; ``preset`` names keep
    their given value (a written task's parameters)."""

    ctx: Ctx
    world: DictWorld
    preset: set[str] = field(default_factory=set)


def check_new_name(name: str, loc: Loc, scope: Scope, what: str = "name") -> None:
    import re

    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
        raise DeclarativeError(loc, f"{what} {name!r} must be letters, digits and '_', starting with a letter")
    if name in RESERVED:
        raise DeclarativeError(loc, f"{what} {name!r} is reserved (it, row, i, outer, call, before, after, calls, "
                               "answer, params have meanings of their own)")
    if name in scope.tables:
        raise DeclarativeError(loc, f"{what} {name!r} is the name of a table; choose another")


def _line(raw: Any, key: str, default: Loc) -> Loc:
    return raw.at(key) if isinstance(raw, LDict) and key in raw.lines else default


def _bound(state: GenState) -> dict[str, Any]:
    return {k: state.ctx.vars[k] for k in ("it", "row", "i") if k in state.ctx.vars}


def _restore(state: GenState, saved: dict[str, Any]) -> None:
    for k in ("it", "row", "i"):
        state.ctx.vars.pop(k, None)
    state.ctx.vars.update(saved)


def _fail(e: Exception, loc: Loc) -> DeclarativeError:
    if isinstance(e, ExprError):
        return DeclarativeError(e.loc or loc, f"`{e.src}`: {e.detail}" if e.src else e.detail)
    return DeclarativeError(loc, str(e))


def compile_lets(items: dict[str, Any], raw: Any, scope: Scope, tables: dict[str, Table]) -> list[tuple[str, Value]]:
    out = []
    for name, v in items.items():
        loc = _line(raw, name, scope_loc(raw))
        check_new_name(name, loc, scope)
        val = compile_value(v, loc, scope)
        scope.names[name] = val.type
        out.append((name, val))
    return out


def scope_loc(raw: Any) -> Loc:
    return getattr(raw, "loc", Loc("?"))


def compile_steps(steps: Sequence[Any], raw: Any, scope: Scope, tables: dict[str, Table]) -> list[Run]:
    """Compile ``steps`` (models, with ``raw`` the list they were read from); names they define are
    added to ``scope`` in order."""
    out: list[Run] = []
    for idx, step in enumerate(steps):
        sraw = raw[idx] if isinstance(raw, LList) and idx < len(raw) else None
        loc = raw.at(idx) if isinstance(raw, LList) else step.at()
        if isinstance(step, LetStep):
            out.append(_let(compile_lets(step.let, sraw.get("let") if isinstance(sraw, LDict) else None, scope,
                                         tables)))
        elif isinstance(step, RowsStep):
            out.append(_rows(step, sraw, loc, scope, tables))
        elif isinstance(step, UpdateStep):
            out.append(_update(step, sraw, loc, scope, tables))
        elif isinstance(step, DeleteStep):
            out.append(_delete(step, sraw, loc, scope, tables))
        elif isinstance(step, RequireStep):
            e = compile_expr(step.require, _line(sraw, "require", loc), scope)
            out.append(_require(e, step.message))
    return out


def run_steps(steps: Sequence[Run], state: GenState) -> None:
    for s in steps:
        s(state)


def _let(items: list[tuple[str, Value]]) -> Run:
    def run(state: GenState) -> None:
        for name, val in items:
            if name in state.preset:
                continue
            try:
                state.ctx.vars[name] = plain(val(state.ctx))
            except ExprError as e:
                raise _fail(e, val.loc) from None
    return run


def _require(e: Any, message: str) -> Run:
    def run(state: GenState) -> None:
        try:
            ok = e(state.ctx)
        except ExprError as err:
            raise _fail(err, e.loc) from None
        if not ok:
            raise Unsatisfied(e.loc, e.src, message)
    return run


def _table(name: str, loc: Loc, tables: dict[str, Table]) -> Table:
    t = tables.get(name)
    if t is None:
        raise DeclarativeError(loc, f"unknown table {name!r}{suggest(name, tables)} (tables: {', '.join(tables)})")
    return t


def _columns(t: Table, values: dict[str, Any], raw: Any, loc: Loc, *, complete: bool) -> None:
    for c in values:
        if c not in t.columns:
            raise DeclarativeError(_line(raw, c, loc), f"table {t.name!r} has no column {c!r}"
                                   f"{suggest(c, t.columns)} (columns: {', '.join(t.columns)})")
    if complete:
        missing = [c.name for c in t.columns.values() if c.required and c.name not in values]
        if missing:
            raise DeclarativeError(loc, f"rows of table {t.name!r} need a value for column(s) "
                                   f"{', '.join(map(repr, missing))}")


def _rows(step: RowsStep, raw: Any, loc: Loc, scope: Scope, tables: dict[str, Table]) -> Run:
    t = _table(step.rows, _line(raw, "rows", loc), tables)
    vraw = raw.get("values") if isinstance(raw, LDict) else None
    _columns(t, step.values, vraw, _line(raw, "values", loc), complete=True)
    if step.repeat is not None and step.for_each is not None:
        raise DeclarativeError(loc, "a rows step has `repeat` or `for_each`, not both")
    count = compile_value(step.repeat if not isinstance(step.repeat, str) or step.repeat.startswith("=")
                          else "=" + step.repeat, _line(raw, "repeat", loc), scope) if step.repeat is not None else None
    items = compile_expr(step.for_each, _line(raw, "for_each", loc), scope) if step.for_each else None
    item_type = items.type.item if items is not None and isinstance(items.type, ListType) else None
    inner = scope.with_names({"it": item_type, "row": item_type, "i": None})
    lets = compile_lets(step.let, raw.get("let") if isinstance(raw, LDict) else None, inner, tables)
    when = compile_expr(step.when, _line(raw, "when", loc), inner) if step.when else None
    values = [(c, compile_value(v, _line(vraw, c, loc), inner)) for c, v in step.values.items()]
    key = compile_expr(step.key, _line(raw, "key", loc), inner) if step.key else None
    name = step.as_
    if name is not None:
        check_new_name(name, _line(raw, "as", loc), scope)
        scope.names[name] = ListType(table_type(t.name, t.columns))
    where = f"{loc}: rows of {t.name!r}"

    def run(state: GenState) -> None:
        ctx = state.ctx
        saved = _bound(state)
        added: list[dict[str, Any]] = []
        try:
            if items is not None:
                seq = items(ctx)
                if not isinstance(seq, list):
                    raise DeclarativeError(items.loc, f"for_each needs a list, got {type(seq).__name__}")
            else:
                n = count(ctx) if count is not None else 1
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100_000:
                    raise DeclarativeError(loc, f"repeat needs a whole number from 0 to 100000, got {n!r}")
                seq = list(range(n))
            for i, it in enumerate(seq):
                ctx.vars["it"] = it
                ctx.vars["row"] = it
                ctx.vars["i"] = i
                for lname, lval in lets:
                    ctx.vars[lname] = plain(lval(ctx))
                if when is not None and not when(ctx):
                    continue
                row = {c: plain(v(ctx)) for c, v in values}
                added.append(state.world.insert(t.name, row, key(ctx) if key is not None else None, where))
        except ExprError as e:
            raise _fail(e, loc) from None
        except TypeMismatch as e:
            raise DeclarativeError(loc, str(e).removeprefix(where + ": ")) from None
        finally:
            for lname, _ in lets:
                ctx.vars.pop(lname, None)
            _restore(state, saved)
        if name is not None and name not in state.preset:
            ctx.vars[name] = added
    return run


def _target(step: Any, kind: str, raw: Any, loc: Loc, scope: Scope, t: Table) -> tuple[Any, Any]:
    if (step.key is None) == (step.where is None):
        raise DeclarativeError(loc, f"a {kind} step names its rows by `key` or by `where`, not both nor neither")
    row_type = table_type(t.name, t.columns)
    inner = scope.with_names({"it": row_type, "row": row_type, "i": None})
    key = compile_expr(step.key, _line(raw, "key", loc), scope) if step.key else None
    where = compile_expr(step.where, _line(raw, "where", loc), inner) if step.where else None
    return key, where


def _keys(state: GenState, t: Table, key: Any, where: Any) -> list[tuple[str, dict[str, Any]]]:
    ctx = state.ctx
    if key is not None:
        k = key_text(key(ctx))
        row = state.world.get(t.name, k)
        return [(k, dict(row))] if row is not None else [(k, {})]
    out = []
    for k in state.world.keys(t.name):
        r = state.world.get(t.name, k)
        ctx.vars["it"] = ctx.vars["row"] = r
        if where(ctx):
            out.append((k, dict(r or {})))
    return out


def _update(step: UpdateStep, raw: Any, loc: Loc, scope: Scope, tables: dict[str, Table]) -> Run:
    t = _table(step.update, _line(raw, "update", loc), tables)
    sraw = raw.get("set") if isinstance(raw, LDict) else None
    _columns(t, step.set, sraw, _line(raw, "set", loc), complete=False)
    key, where = _target(step, "update", raw, loc, scope, t)
    row_type = table_type(t.name, t.columns)
    inner = scope.with_names({"it": row_type, "row": row_type, "i": None})
    values = [(c, compile_value(v, _line(sraw, c, loc), inner)) for c, v in step.set.items()]
    label = f"{loc}: update of {t.name!r}"

    def run(state: GenState) -> None:
        saved = _bound(state)
        try:
            for k, row in _keys(state, t, key, where):
                state.ctx.vars["it"] = state.ctx.vars["row"] = row
                state.world.update(t.name, k, {c: plain(v(state.ctx)) for c, v in values}, label)
        except ExprError as e:
            raise _fail(e, loc) from None
        except TypeMismatch as e:
            raise DeclarativeError(loc, str(e).removeprefix(label + ": ")) from None
        finally:
            _restore(state, saved)
    return run


def _delete(step: DeleteStep, raw: Any, loc: Loc, scope: Scope, tables: dict[str, Table]) -> Run:
    t = _table(step.delete, _line(raw, "delete", loc), tables)
    key, where = _target(step, "delete", raw, loc, scope, t)
    label = f"{loc}: delete from {t.name!r}"

    def run(state: GenState) -> None:
        saved = _bound(state)
        try:
            for k, _ in _keys(state, t, key, where):
                state.world.delete(t.name, k, label)
        except ExprError as e:
            raise _fail(e, loc) from None
        except TypeMismatch as e:
            raise DeclarativeError(loc, str(e).removeprefix(label + ": ")) from None
        finally:
            _restore(state, saved)
    return run


__all__ = ["GenState", "RESERVED", "check_new_name", "compile_lets", "compile_steps", "run_steps"]
