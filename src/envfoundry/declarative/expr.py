"""A small, safe expression language: Python's expression syntax, a whitelist of its nodes, our own
interpreter.

The text is parsed by :func:`ast.parse` (parsing runs no code) and every node is checked against a
whitelist before anything is evaluated; the checked tree is compiled into closures that this module
evaluates itself. There is no ``eval``, no attribute access on Python objects (``x.f`` reads field
``f`` of a record, nothing else), no names or fields starting with ``_``, no imports, lambdas,
comprehensions or f-strings, and only the functions of :mod:`.functions` can be called. Sizes and
work are bounded, so no expression can exhaust the host.

What is allowed::

    numbers, 'text', true/false/null (also True/False/None), [lists], {'records': ...}
    + - * / // %   == != < <= > >=   and or not   in, not in   x if cond else y
    record.field   list[0]   text[1:3]   record['field']
    f(args)        a function of :mod:`.functions`, or one of the list forms below

List forms evaluate their later arguments once per item, with the item as ``it`` (also ``row``)
and its position as ``i``; inside a list form within another, ``outer`` is the enclosing item;
a table's name stands for the list of its rows::

    count(entries, row.period == period)         sum(entries, row.amount, row.debit == '1000')
    filter(lines, it.amount < 0)    map(lines, it.id)    any(xs, it > 3)    all(xs, it > 3)
    first(xs, cond)   last(xs, cond)   sorted(xs, it.date)   min_by(xs, it.amount)   max_by(...)
    exists(entries, row.ref == ref)   times(3, randint(1, 6))
    get(table, key) -> the row or null      rows(table)      next_key(table, 'JE-', 5)

Names are checked when the folder is loaded: an unknown name, function, table or column (of a row
whose table is known) is an error at the expression's line.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from .context import Ctx, ListType, RecType, Scope, WorldView, listing, short, suggest, table_type
from .errors import DeclarativeError, ExprError, Loc
from .functions import is_num, show, type_name
from .library import FUNCTIONS, RANDOM
from .operators import (
    BINOPS,
    CMPS,
    FORMS,
    IS_NOT_NULL,
    IS_NULL,
    Fn,
    int_or_none,
    number,
    sum_plain,
    world_of,
)

MAX_SOURCE = 5000
_CONSTANT_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_LIST_FORMS = {"count", "sum", "any", "all", "filter", "map", "first", "last", "sorted", "min_by", "max_by",
               "exists", "times"}
_WORLD_FUNCS = {"get", "rows", "next_key"}
_CALC_FUNCS = {"abs", "round", "min", "max", "sum", "sqrt", "pow", "floor", "ceil"}


# ------------------------------------------------------------------ the compiled expression
class Expr:
    """A checked, compiled expression: call it with a :class:`Ctx`."""

    __slots__ = ("src", "loc", "fn", "type")

    def __init__(self, src: str, loc: Loc, fn: Fn, typ: Any) -> None:
        self.src, self.loc, self.fn, self.type = src, loc, fn, typ

    def __call__(self, ctx: Ctx) -> Any:
        try:
            return self.fn(ctx)
        except ExprError as e:
            raise e.located(self.loc, self.src) from None
        except RecursionError:
            raise ExprError("the values are nested too deeply", self.loc, self.src) from None
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as e:  # a gap in our own checks
            raise ExprError(f"{type(e).__name__}: {e}", self.loc, self.src) from None

    def __repr__(self) -> str:
        return f"Expr({self.src!r} at {self.loc})"


def constant(value: Any, loc: Loc) -> Expr:
    return Expr(repr(value), loc, lambda ctx: value, None)


def compile_expr(src: str, loc: Loc, scope: Scope) -> Expr:
    """Check and compile ``src`` (a leading ``=`` is allowed); a DeclarativeError names what is wrong."""
    if not isinstance(src, str):
        raise DeclarativeError(loc, f"expected an expression (text), got {type_name(src)} {show(src)}")
    body = src[1:] if src.startswith("=") else src
    if not body.strip():
        raise DeclarativeError(loc, "empty expression")
    if len(body) > MAX_SOURCE:
        raise DeclarativeError(loc, f"the expression is {len(body)} characters long; at most {MAX_SOURCE}")
    try:
        with warnings.catch_warnings():  # Python's own hints ("invalid decimal literal") are not ours to print
            warnings.simplefilter("ignore")
            tree = ast.parse("(" + body.strip() + "\n)", mode="eval")
    except SyntaxError as e:
        hint = ""
        if body.count("(") != body.count(")") or body.count("[") != body.count("]"):
            hint = ("; if it is written inside YAML's {...} or [...], quote it: there a comma ends an unquoted "
                    "value (write \"=f(a, b)\")")
        raise DeclarativeError(loc, f"expression `{short(body.strip())}`: syntax error: {e.msg}{hint}") from None
    except (RecursionError, MemoryError, ValueError):
        raise DeclarativeError(loc, f"expression `{body.strip()[:60]}` is nested too deeply") from None
    c = _Compiler(scope, loc, body.strip())
    private = sorted(((getattr(n, "end_col_offset", 0) or 0, n.id if isinstance(n, ast.Name) else n.attr)
                      for n in ast.walk(tree) if (isinstance(n, ast.Name) and n.id.startswith("_"))
                      or (isinstance(n, ast.Attribute) and n.attr.startswith("_"))), key=lambda x: x[0])
    if private:  # the first, in reading order: `__import__('os').system` names __import__
        _check_name(c, private[0][1])
    try:
        fn, typ = c.node(tree.body)
    except RecursionError:
        raise DeclarativeError(loc, f"expression `{body.strip()[:60]}` is nested too deeply") from None
    return Expr(body.strip(), loc, fn, typ)


class _Compiler:
    def __init__(self, scope: Scope, loc: Loc, src: str) -> None:
        self.scope, self.loc, self.src = scope, loc, src

    def fail(self, msg: str) -> DeclarativeError:
        where = f" {self.scope.where}" if self.scope.where else ""
        return DeclarativeError(self.loc, f"expression `{short(self.src)}`{where}: {msg}")

    # ------------------------------------------------------------ dispatch
    def node(self, n: ast.AST) -> tuple[Fn, Any]:
        meth = getattr(self, "n_" + type(n).__name__, None)
        if meth is None:
            raise self.fail(_refusal(n))
        if self.scope.calculator and not isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name,
                                                        ast.List, ast.Tuple)):
            funcs = ", ".join(sorted(_CALC_FUNCS))
            raise self.fail(f"a calculation holds numbers, + - * / // %, parentheses and {funcs}")
        return meth(n)

    def n_Constant(self, n: ast.Constant) -> tuple[Fn, Any]:
        v = n.value
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise self.fail(f"{type(v).__name__} values are not allowed")
        if self.scope.calculator and not is_num(v):
            raise self.fail("a calculation holds only numbers")
        return (lambda ctx: v), None

    def n_Name(self, n: ast.Name) -> tuple[Fn, Any]:
        name = n.id
        _check_name(self, name)
        if name in _CONSTANT_NAMES and name not in self.scope.names:
            v = _CONSTANT_NAMES[name]
            return (lambda ctx: v), None
        if self.scope.calculator:
            raise self.fail(f"unknown name {name!r}: a calculation holds only numbers")
        if name in self.scope.names:
            def var(ctx: Ctx) -> Any:
                try:
                    return ctx.vars[name]
                except KeyError:
                    raise ExprError(f"{name!r} has no value here") from None
            return var, self.scope.names[name]
        if name in self.scope.tables:
            self._needworld_of(name)
            typ = ListType(table_type(name, self.scope.tables[name]))
            return (lambda ctx: world_of(ctx).rows(name)), typ
        known = [*self.scope.names, *self.scope.tables]
        if name in FUNCTIONS or name in RANDOM or name in _LIST_FORMS or name in _WORLD_FUNCS:
            raise self.fail(f"{name!r} is a function: call it, e.g. {name}(...)")
        raise self.fail(f"unknown name {name!r}{suggest(name, known)} (names here: {listing(known) or 'none'})")

    def _needworld_of(self, what: str) -> None:
        if not self.scope.world:
            raise self.fail(f"{what}: the world's tables cannot be read here")

    def n_List(self, n: ast.List | ast.Tuple) -> tuple[Fn, Any]:
        fns = [self.node(e)[0] for e in n.elts]
        if any(isinstance(e, ast.Starred) for e in n.elts):
            raise self.fail("*starred items are not allowed")
        return (lambda ctx: [f(ctx) for f in fns]), None

    n_Tuple = n_List

    def n_Dict(self, n: ast.Dict) -> tuple[Fn, Any]:
        if any(k is None for k in n.keys):
            raise self.fail("**unpacking is not allowed in a record; use merge(a, b)")
        keys = [self.node(k)[0] for k in n.keys if k is not None]
        vals = [self.node(v) for v in n.values]
        static = [k.value for k in n.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        for k in static:
            _check_name(self, k, what="field")

        def make(ctx: Ctx) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for kf, (vf, _) in zip(keys, vals, strict=True):
                k = kf(ctx)
                if not isinstance(k, str):
                    raise ExprError(f"record fields are named by text, got {type_name(k)} {show(k)}")
                if k.startswith("_"):
                    raise ExprError(f"field names starting with '_' are not allowed ({k!r})")
                out[k] = vf(ctx)
            return out

        typ = None
        if len(static) == len(n.keys):
            typ = RecType(frozenset(static), "this record", "field",
                          {k: v[1] for k, v in zip(static, vals, strict=True) if v[1] is not None})
        return make, typ

    def n_BinOp(self, n: ast.BinOp) -> tuple[Fn, Any]:
        op = BINOPS.get(type(n.op))
        if op is None:
            sym = {ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
                   ast.RShift: ">>", ast.MatMult: "@"}.get(type(n.op), type(n.op).__name__)
            hint = "; use pow(x, y)" if sym == "**" else ""
            raise self.fail(f"the operator {sym} is not allowed{hint}")
        a, _ = self.node(n.left)
        b, _ = self.node(n.right)
        return (lambda ctx: op(ctx, a(ctx), b(ctx))), None

    def n_UnaryOp(self, n: ast.UnaryOp) -> tuple[Fn, Any]:
        a, _ = self.node(n.operand)
        if isinstance(n.op, ast.USub):
            return (lambda ctx: -number(a(ctx), "-")), None
        if isinstance(n.op, ast.UAdd):
            return (lambda ctx: number(a(ctx), "+")), None
        if isinstance(n.op, ast.Not) and not self.scope.calculator:
            return (lambda ctx: not a(ctx)), None
        raise self.fail(f"the operator {type(n.op).__name__} is not allowed")

    def n_BoolOp(self, n: ast.BoolOp) -> tuple[Fn, Any]:
        fns = [self.node(v)[0] for v in n.values]
        if isinstance(n.op, ast.And):
            def and_(ctx: Ctx) -> Any:
                v = None
                for f in fns:
                    v = f(ctx)
                    if not v:
                        return v
                return v
            return and_, None

        def or_(ctx: Ctx) -> Any:
            v = None
            for f in fns:
                v = f(ctx)
                if v:
                    return v
            return v
        return or_, None

    def n_Compare(self, n: ast.Compare) -> tuple[Fn, Any]:
        first, _ = self.node(n.left)
        parts = []
        for op, right in zip(n.ops, n.comparators, strict=True):
            if isinstance(op, (ast.Is, ast.IsNot)):
                if not (isinstance(right, ast.Constant) and right.value is None) and not (
                        isinstance(right, ast.Name) and right.id in ("null", "None")):
                    raise self.fail("`is` compares only with null (x is null); use == for values")
                fn = IS_NULL if isinstance(op, ast.Is) else IS_NOT_NULL
            else:
                fn = CMPS[type(op)]
            parts.append((fn, self.node(right)[0]))

        def compare(ctx: Ctx) -> bool:
            a = first(ctx)
            for fn, rf in parts:
                b = rf(ctx)
                if not fn(a, b):
                    return False
                a = b
            return True
        return compare, None

    def n_IfExp(self, n: ast.IfExp) -> tuple[Fn, Any]:
        c, _ = self.node(n.test)
        a, ta = self.node(n.body)
        b, tb = self.node(n.orelse)
        return (lambda ctx: a(ctx) if c(ctx) else b(ctx)), (ta if ta == tb else None)

    def n_Attribute(self, n: ast.Attribute) -> tuple[Fn, Any]:
        name = n.attr
        _check_name(self, name, what="field")
        base, typ = self.node(n.value)
        sub = None
        if isinstance(typ, RecType):
            if name not in typ.fields:
                raise self.fail(f"{typ.what} has no {typ.noun} {name!r}{suggest(name, typ.fields)} "
                                f"({typ.noun}s: {listing(typ.fields, 20)})")
            sub = typ.sub.get(name)

        def attr(ctx: Ctx) -> Any:
            r = base(ctx)
            if r is None:
                return None  # null propagates: get(t, k).f is null when there is no such row
            if isinstance(r, Mapping):
                if name in r:
                    return r[name]
                raise ExprError(f"the record has no field {name!r}{suggest(name, r)} (fields: {listing(r, 20)})")
            raise ExprError(f"only records have fields; .{name} was asked of {type_name(r)} {show(r)}")
        return attr, sub

    def n_Subscript(self, n: ast.Subscript) -> tuple[Fn, Any]:
        base, typ = self.node(n.value)
        if isinstance(n.slice, ast.Slice):
            if n.slice.step is not None:
                raise self.fail("slices take no step")
            lo = self.node(n.slice.lower)[0] if n.slice.lower is not None else None
            hi = self.node(n.slice.upper)[0] if n.slice.upper is not None else None

            def sl(ctx: Ctx) -> Any:
                v = base(ctx)
                a = int_or_none(lo(ctx) if lo else None)
                b = int_or_none(hi(ctx) if hi else None)
                if isinstance(v, (str, list, tuple)):
                    return list(v[a:b]) if isinstance(v, tuple) else v[a:b]
                raise ExprError(f"only text and lists can be sliced, got {type_name(v)}")
            return sl, typ
        idx, _ = self.node(n.slice)
        item = typ.item if isinstance(typ, ListType) else None
        if isinstance(typ, RecType) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str):
            key = n.slice.value
            _check_name(self, key, what="field")
            if key not in typ.fields:
                raise self.fail(f"{typ.what} has no {typ.noun} {key!r}{suggest(key, typ.fields)}")
            item = typ.sub.get(key)

        def sub(ctx: Ctx) -> Any:
            v, k = base(ctx), idx(ctx)
            if isinstance(v, (list, tuple, str)):
                if not is_num(k) or int(k) != k:
                    raise ExprError(f"a position must be a whole number, got {show(k)}")
                if not -len(v) <= int(k) < len(v):
                    raise ExprError(f"position {int(k)} is outside the {type_name(v)} ({len(v)} items)")
                return v[int(k)]
            if isinstance(v, Mapping):
                if not isinstance(k, str) or k.startswith("_"):
                    raise ExprError(f"a record's field is named by text, got {show(k)}")
                if k not in v:
                    raise ExprError(f"the record has no field {k!r}{suggest(k, v)}")
                return v[k]
            if v is None:
                return None
            raise ExprError(f"cannot take [{show(k)}] of {type_name(v)}")
        return sub, item

    # ------------------------------------------------------------ calls
    def n_Call(self, n: ast.Call) -> tuple[Fn, Any]:
        if not isinstance(n.func, ast.Name):
            if isinstance(n.func, ast.Attribute):
                _check_name(self, n.func.attr, what="function")
                raise self.fail(f"only named functions can be called: write {n.func.attr}(x), not x.{n.func.attr}()")
            self.node(n.func)  # a lambda says so
            raise self.fail("only named functions can be called")
        name = n.func.id
        _check_name(self, name, what="function")
        if n.keywords:
            raise self.fail(f"{name}() takes no named arguments")
        if any(isinstance(a, ast.Starred) for a in n.args):
            raise self.fail("*starred arguments are not allowed")
        if self.scope.calculator and name not in _CALC_FUNCS:
            raise self.fail(f"unknown function {name!r}: a calculation may call {', '.join(sorted(_CALC_FUNCS))}")
        if name in _LIST_FORMS:
            if name == "sum" and len(n.args) == 1:
                a, _ = self.node(n.args[0])
                return (lambda ctx: sum_plain(ctx, a(ctx))), None
            return self.list_form(name, n.args)
        if name in _WORLD_FUNCS:
            return self.world_func(name, n.args)
        if name in RANDOM:
            if not self.scope.random:
                raise self.fail(f"{name}() draws at random: chance is available only in generator steps")
            fn, lo, hi = RANDOM[name]
            args = self._args(name, n.args, lo, hi)

            def rcall(ctx: Ctx) -> Any:
                if ctx.rng is None:
                    raise ExprError(f"{name}() needs the generator's random source")
                return fn(ctx.rng, *[a(ctx) for a in args])
            return rcall, None
        if name not in FUNCTIONS:
            known = [*FUNCTIONS, *_LIST_FORMS, *(_WORLD_FUNCS if self.scope.world else ()),
                     *(RANDOM if self.scope.random else ())]
            raise self.fail(f"unknown function {name!r}{suggest(name, known)}")
        fn, lo, hi = FUNCTIONS[name]
        args = self._args(name, n.args, lo, hi)
        if name in ("concat", "range", "merge", "join", "unique", "flatten"):
            def bounded(ctx: Ctx) -> Any:
                r = fn(*[a(ctx) for a in args])
                ctx.spend(len(r) if isinstance(r, (list, str, dict)) else 1)
                return r
            return bounded, None
        return (lambda ctx: fn(*[a(ctx) for a in args])), None

    def _args(self, name: str, args: Sequence[ast.expr], lo: int, hi: int | None) -> list[Fn]:
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else (f"{lo} to {hi}" if hi is not None else f"at least {lo}")
            raise self.fail(f"{name}() takes {want} argument(s), got {len(args)}")
        return [self.node(a)[0] for a in args]

    def _table_arg(self, name: str, arg: ast.expr) -> str:
        if isinstance(arg, ast.Name) and arg.id in self.scope.tables and arg.id not in self.scope.names:
            return arg.id
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in self.scope.tables:
            return arg.value
        got = arg.id if isinstance(arg, ast.Name) else (arg.value if isinstance(arg, ast.Constant) else None)
        tables = list(self.scope.tables)
        what = f"unknown table {got!r}{suggest(str(got), tables)}" if got is not None else "a table's name"
        raise self.fail(f"{name}() needs a table first: {what} (tables: {listing(tables) or 'none'})")

    def world_func(self, name: str, args: list[ast.expr]) -> tuple[Fn, Any]:
        self._needworld_of(f"{name}()")
        want = {"get": 2, "rows": 1, "next_key": 3}[name]
        if len(args) != want:
            raise self.fail(f"{name}() takes {want} argument(s), got {len(args)}")
        table = self._table_arg(name, args[0])
        row = table_type(table, self.scope.tables[table])
        rest = [self.node(a)[0] for a in args[1:]]
        if name == "get":
            kf = rest[0]

            def get(ctx: Ctx) -> Any:
                k = kf(ctx)
                if k is None:
                    return None
                if is_num(k):
                    k = str(int(k)) if float(k).is_integer() else str(k)
                if not isinstance(k, str):
                    raise ExprError(f"get({table}, ...): a key is text, got {type_name(k)} {show(k)}")
                return world_of(ctx).get(table, k)
            return get, row
        if name == "rows":
            return (lambda ctx: world_of(ctx).rows(table)), ListType(row)
        pf, wf = rest

        def next_key(ctx: Ctx) -> str:
            prefix, width = pf(ctx), wf(ctx)
            if not isinstance(prefix, str) or not is_num(width) or not 0 < int(width) <= 30:
                raise ExprError("next_key(table, 'PREFIX-', width): a text prefix and a width from 1 to 30")
            keys = world_of(ctx).keys(table)
            ctx.spend(len(keys))
            top = 0
            for k in keys:
                tail = k[len(prefix):] if k.startswith(prefix) else ""
                if tail.isdigit():
                    top = max(top, int(tail))
            return f"{prefix}{top + 1:0{int(width)}d}"
        return next_key, None

    def list_form(self, name: str, args: list[ast.expr]) -> tuple[Fn, Any]:
        lo, hi = {"count": (1, 2), "sum": (2, 3), "any": (1, 2), "all": (1, 2), "filter": (2, 2), "map": (2, 2),
                  "first": (1, 2), "last": (1, 2), "sorted": (1, 2), "min_by": (2, 2), "max_by": (2, 2),
                  "exists": (2, 2), "times": (2, 2)}[name]
        if not lo <= len(args) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} or {hi}"
            raise self.fail(f"{name}() takes {want} argument(s), got {len(args)}")
        src, styp = self.node(args[0])
        if name == "times":
            item: Any = None
        else:
            item = styp.item if isinstance(styp, ListType) else None
        bound: dict[str, Any] = {"it": item, "row": item, "i": None}
        if "it" in self.scope.names:
            bound["outer"] = self.scope.names["it"]
        inner = self.scope.with_names(bound)
        sub = _Compiler(inner, self.loc, self.src)
        fns = [sub.node(a) for a in args[1:]]
        f1 = fns[0][0] if fns else None
        f2 = fns[1][0] if len(fns) > 1 else None
        out_type = {"filter": styp, "sorted": styp, "first": item, "last": item, "min_by": item,
                    "max_by": item}.get(name)
        if name == "map" and fns[0][1] is not None:
            out_type = ListType(fns[0][1])
        impl = FORMS[name]

        def form(ctx: Ctx) -> Any:
            return impl(ctx, src(ctx), f1, f2)
        return form, out_type

    # ------------------------------------------------------------ refusals with reasons
    def n_Lambda(self, n: ast.AST) -> tuple[Fn, Any]:
        raise self.fail(_refusal(n))


def _refusal(n: ast.AST) -> str:
    kind = type(n).__name__
    reasons = {
        "Lambda": "lambda is not allowed (the list forms bind `it`: filter(xs, it > 0))",
        "ListComp": "comprehensions are not allowed; use map(xs, ...) and filter(xs, ...)",
        "SetComp": "comprehensions are not allowed; use map(xs, ...) and filter(xs, ...)",
        "DictComp": "comprehensions are not allowed; use map(xs, ...) and filter(xs, ...)",
        "GeneratorExp": "comprehensions are not allowed; use map(xs, ...) and filter(xs, ...)",
        "JoinedStr": "f-strings are not allowed; write 'a' + str(x), or use a {template} where text is expected",
        "NamedExpr": "assignment (:=) is not allowed",
        "Await": "await is not allowed", "Yield": "yield is not allowed", "YieldFrom": "yield is not allowed",
        "Set": "sets are not allowed; use a [list]",
        "Starred": "*starred values are not allowed",
    }
    return reasons.get(kind, f"{kind} is not allowed in an expression")


def _check_name(c: _Compiler, name: str, what: str = "name") -> None:
    if name.startswith("_"):
        raise c.fail(f"{name!r} is not allowed: expressions cannot reach Python (no {what} may start with '_')")



__all__ = ["Ctx", "Expr", "ListType", "RecType", "Scope", "WorldView", "compile_expr", "constant", "table_type"]
