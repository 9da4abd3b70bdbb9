"""The evaluation of expressions: operators with our own type checks, and the list forms
(``count``, ``sum``, ``filter``, ``map``...) that bind ``it``, ``row``, ``i`` and ``outer`` per item."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .context import BOUND, Ctx, WorldView
from .errors import ExprError
from .functions import capped, is_num, seq, show, type_name

Fn = Callable[[Ctx], Any]


def world_of(ctx: Ctx) -> WorldView:
    if ctx.world is None:
        raise ExprError("there is no world to read here")
    return ctx.world


def number(v: Any, op: str) -> Any:
    if is_num(v):
        return v
    raise ExprError(f"{op} needs a number, got {type_name(v)} {show(v)}")


def int_or_none(v: Any) -> int | None:
    if v is None:
        return None
    if is_num(v) and int(v) == v:
        return int(v)
    raise ExprError(f"a slice bound must be a whole number, got {show(v)}")


def _described(v: Any) -> str:
    return "null" if v is None else f"{type_name(v)} {show(v)}"


def _bad(op: str, a: Any, b: Any) -> ExprError:
    return ExprError(f"cannot apply {op} to {_described(a)} and {_described(b)}")


def _add(ctx: Ctx, a: Any, b: Any) -> Any:
    if is_num(a) and is_num(b):
        return a + b
    if (isinstance(a, str) and isinstance(b, str)) or (isinstance(a, list) and isinstance(b, list)):
        ctx.spend(len(a) + len(b))
        return capped(a + b)
    raise _bad("+", a, b)


def _sub(ctx: Ctx, a: Any, b: Any) -> Any:
    if is_num(a) and is_num(b):
        return a - b
    raise _bad("-", a, b)


def _mul(ctx: Ctx, a: Any, b: Any) -> Any:
    if is_num(a) and is_num(b):
        return a * b
    for s, k in ((a, b), (b, a)):
        if isinstance(s, (str, list)) and isinstance(k, int) and not isinstance(k, bool):
            if len(s) * max(k, 0) > 100_000:
                raise ExprError(f"repeating {type_name(s)} {k} times would be too long")
            ctx.spend(len(s) * max(k, 0))
            return s * k
    raise _bad("*", a, b)


def _div(ctx: Ctx, a: Any, b: Any) -> Any:
    if is_num(a) and is_num(b):
        if b == 0:
            raise ExprError(f"division by zero ({show(a)} / 0)")
        return a / b
    raise _bad("/", a, b)


def _floordiv(ctx: Ctx, a: Any, b: Any) -> Any:
    if is_num(a) and is_num(b):
        if b == 0:
            raise ExprError(f"division by zero ({show(a)} // 0)")
        return a // b
    raise _bad("//", a, b)


def _mod(ctx: Ctx, a: Any, b: Any) -> Any:
    if is_num(a) and is_num(b):
        if b == 0:
            raise ExprError(f"division by zero ({show(a)} % 0)")
        return a % b
    raise _bad("%", a, b)


BINOPS: dict[type, Callable[[Ctx, Any, Any], Any]] = {
    ast.Add: _add, ast.Sub: _sub, ast.Mult: _mul, ast.Div: _div, ast.FloorDiv: _floordiv, ast.Mod: _mod,
}


def _order(op: str, fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def cmp(a: Any, b: Any) -> bool:
        if (is_num(a) and is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
            return fn(a, b)
        raise _bad(op, a, b)
    return cmp


def _in(a: Any, b: Any) -> bool:
    if isinstance(b, str):
        if not isinstance(a, str):
            raise _bad("in", a, b)
        return a in b
    if isinstance(b, (list, tuple, Mapping)):
        return a in b
    if b is None:
        return False
    raise ExprError(f"`in` looks into text, a list or a record, not {type_name(b)}")


CMPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: _order("<", lambda a, b: a < b), ast.LtE: _order("<=", lambda a, b: a <= b),
    ast.Gt: _order(">", lambda a, b: a > b), ast.GtE: _order(">=", lambda a, b: a >= b),
    ast.In: _in, ast.NotIn: lambda a, b: not _in(a, b),
}


def IS_NULL(a: Any, b: Any) -> bool:
    return a is None


def IS_NOT_NULL(a: Any, b: Any) -> bool:
    return a is not None


def sum_plain(ctx: Ctx, items: Any) -> Any:
    total: Any = 0
    for v in seq(items, "a list of numbers"):
        ctx.spend(1)
        if not is_num(v):
            raise ExprError(f"sum needs numbers, got {type_name(v)} {show(v)}")
        total += v
    return total


class _Bind:
    """Binds it/row/i for the items of a list form, restoring what they were before."""

    __slots__ = ("ctx", "saved")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.saved = {k: ctx.vars[k] for k in BOUND if k in ctx.vars}
        if "it" in ctx.vars:
            ctx.vars["outer"] = ctx.vars["it"]  # the enclosing list form's item

    def set(self, i: int, v: Any) -> None:
        d = self.ctx.vars
        d["it"] = v
        d["row"] = v
        d["i"] = i
        self.ctx.spend(1)

    def done(self) -> None:
        for k in BOUND:
            self.ctx.vars.pop(k, None)
        self.ctx.vars.update(self.saved)


def _items(v: Any, name: str) -> Sequence[Any]:
    if isinstance(v, (list, tuple)):
        return v
    if v is None:
        return ()
    raise ExprError(f"{name}() goes through a list or a table, got {type_name(v)} {show(v)}")


def _each(ctx: Ctx, items: Sequence[Any], fn: Fn | None) -> list[tuple[Any, Any]]:
    b = _Bind(ctx)
    try:
        out = []
        for i, v in enumerate(items):
            b.set(i, v)
            out.append((v, fn(ctx) if fn is not None else v))
        return out
    finally:
        b.done()


def _f_count(ctx: Ctx, src: Any, cond: Fn | None, _: Fn | None) -> int:
    items = _items(src, "count")
    if cond is None:
        return len(items)
    return sum(1 for _, ok in _each(ctx, items, cond) if ok)


def _f_sum(ctx: Ctx, src: Any, val: Fn | None, cond: Fn | None) -> Any:
    items = _items(src, "sum")
    b = _Bind(ctx)
    total: Any = 0
    try:
        for i, v in enumerate(items):
            b.set(i, v)
            if cond is not None and not cond(ctx):
                continue
            x = val(ctx) if val is not None else v
            if not is_num(x):
                raise ExprError(f"sum needs numbers, got {type_name(x)} {show(x)}")
            total += x
    finally:
        b.done()
    return total


def _f_any(ctx: Ctx, src: Any, cond: Fn | None, _: Fn | None) -> bool:
    items = _items(src, "any")
    b = _Bind(ctx)
    try:
        for i, v in enumerate(items):
            b.set(i, v)
            if (cond(ctx) if cond is not None else v):
                return True
        return False
    finally:
        b.done()


def _f_all(ctx: Ctx, src: Any, cond: Fn | None, _: Fn | None) -> bool:
    items = _items(src, "all")
    b = _Bind(ctx)
    try:
        for i, v in enumerate(items):
            b.set(i, v)
            if not (cond(ctx) if cond is not None else v):
                return False
        return True
    finally:
        b.done()


def _f_filter(ctx: Ctx, src: Any, cond: Fn | None, _: Fn | None) -> list[Any]:
    return [v for v, ok in _each(ctx, _items(src, "filter"), cond) if ok]


def _f_map(ctx: Ctx, src: Any, fn: Fn | None, _: Fn | None) -> list[Any]:
    return [r for _, r in _each(ctx, _items(src, "map"), fn)]


def _f_first(ctx: Ctx, src: Any, cond: Fn | None, _: Fn | None) -> Any:
    items = _items(src, "first")
    if cond is None:
        return items[0] if items else None
    b = _Bind(ctx)
    try:
        for i, v in enumerate(items):
            b.set(i, v)
            if cond(ctx):
                return v
        return None
    finally:
        b.done()


def _f_last(ctx: Ctx, src: Any, cond: Fn | None, _: Fn | None) -> Any:
    items = _items(src, "last")
    if cond is None:
        return items[-1] if items else None
    hits = [v for v, ok in _each(ctx, items, cond) if ok]
    return hits[-1] if hits else None


def _key(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    if v is None or isinstance(v, bool) or not (is_num(v) or isinstance(v, str)):
        raise ExprError(f"sort keys are numbers or text, got {type_name(v)} {show(v)}")
    return v


def _sorted_pairs(ctx: Ctx, items: Sequence[Any], fn: Fn | None, name: str) -> list[tuple[Any, Any]]:
    pairs = [(v, _key(k)) for v, k in _each(ctx, items, fn)]
    try:
        return sorted(pairs, key=lambda p: p[1])
    except TypeError:
        raise ExprError(f"{name}(): the keys mix numbers and text") from None


def _f_sorted(ctx: Ctx, src: Any, fn: Fn | None, _: Fn | None) -> list[Any]:
    return [v for v, _ in _sorted_pairs(ctx, _items(src, "sorted"), fn, "sorted")]


def _f_min_by(ctx: Ctx, src: Any, fn: Fn | None, _: Fn | None) -> Any:
    p = _sorted_pairs(ctx, _items(src, "min_by"), fn, "min_by")
    return p[0][0] if p else None


def _f_max_by(ctx: Ctx, src: Any, fn: Fn | None, _: Fn | None) -> Any:
    items = _items(src, "max_by")
    p = _sorted_pairs(ctx, items, fn, "max_by")
    if not p:
        return None
    top = p[-1][1]
    return next(v for v, k in p if k == top)  # the first of the largest, as max() gives


def _f_times(ctx: Ctx, src: Any, fn: Fn | None, _: Fn | None) -> list[Any]:
    if not is_num(src) or int(src) != src or not 0 <= src <= 10_000:
        raise ExprError(f"times(n, ...) needs a whole number from 0 to 10000, got {show(src)}")
    return [r for _, r in _each(ctx, range(int(src)), fn)]


FORMS: dict[str, Callable[[Ctx, Any, Fn | None, Fn | None], Any]] = {
    "count": _f_count, "sum": _f_sum, "any": _f_any, "all": _f_all, "filter": _f_filter, "map": _f_map,
    "first": _f_first, "last": _f_last, "sorted": _f_sorted, "min_by": _f_min_by, "max_by": _f_max_by,
    "exists": _f_any, "times": _f_times,
}



__all__ = ["BINOPS", "CMPS", "FORMS", "IS_NOT_NULL", "IS_NULL", "Fn", "int_or_none", "number", "sum_plain",
           "world_of"]
