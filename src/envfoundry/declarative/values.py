"""Templates (text with ``{expression:format}`` holes) and values written in files (a literal, an
``=expression``, or mappings and lists holding them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .context import Ctx, RecType, Scope
from .errors import DeclarativeError, ExprError, Loc
from .expr import compile_expr
from .functions import capped, format_value, show, type_name
from .operators import Fn


# ------------------------------------------------------------------ templates
@dataclass(frozen=True)
class Template:
    """Text with ``{expression}`` and ``{expression:format}`` holes (``{{`` and ``}}`` are braces)."""

    src: str
    parts: tuple[Any, ...]  # str or (Expr, spec)
    loc: Loc

    def __call__(self, ctx: Ctx) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            e, spec = p
            v = e(ctx)
            try:
                out.append(format_value(v, spec) if spec else _plain(v))
            except ExprError as err:
                raise err.located(e.loc, e.src) from None
        return capped("".join(out))

    @property
    def is_constant(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)


def _plain(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    import json

    return json.dumps(v, default=str, ensure_ascii=False)


def compile_template(src: Any, loc: Loc, scope: Scope) -> Template:
    if not isinstance(src, str):
        raise DeclarativeError(loc, f"expected text, got {type_name(src)} {show(src)}")
    parts: list[Any] = []
    buf: list[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "{" and src.startswith("{{", i):
            buf.append("{")
            i += 2
            continue
        if c == "}" and src.startswith("}}", i):
            buf.append("}")
            i += 2
            continue
        if c == "}":
            raise DeclarativeError(loc, f"template {src[:60]!r}: a lone '}}' (write '}}}}' for a brace)")
        if c != "{":
            buf.append(c)
            i += 1
            continue
        j, depth, quote, colon = i + 1, 0, "", -1
        while j < n:
            ch = src[j]
            if quote:
                if ch == "\\":
                    j += 2
                    continue
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0 and ch == "}":
                    break
                depth -= 1
            elif ch == ":" and depth == 0 and colon < 0:
                colon = j
            j += 1
        if j >= n:
            raise DeclarativeError(loc, f"template {src[:60]!r}: '{{' without its '}}' (write '{{{{' for a brace)")
        inner = src[i + 1:j]
        body, spec = (inner[:colon - i - 1], inner[colon - i:]) if colon >= 0 else (inner, "")
        if not body.strip():
            raise DeclarativeError(loc, f"template {src[:60]!r}: an empty {{}}")
        if spec:
            try:
                format_value(0 if spec[-1:] in "dnxXobc" else 0.0, spec)
            except ExprError as e:
                raise DeclarativeError(loc, f"template {src[:60]!r}: {e.detail}") from None
        if buf:
            parts.append("".join(buf))
            buf = []
        parts.append((compile_expr(body, loc, scope), spec))
        i = j + 1
    if buf:
        parts.append("".join(buf))
    return Template(src, tuple(parts), loc)


# ------------------------------------------------------------------ values: literals or =expressions
class Value:
    """A value written in a file: a literal, an ``=expression``, or a mapping/list holding them."""

    __slots__ = ("fn", "loc", "static", "literal", "type")

    def __init__(self, fn: Fn, loc: Loc, static: bool, literal: Any = None, typ: Any = None) -> None:
        self.fn, self.loc, self.static, self.literal, self.type = fn, loc, static, literal, typ

    def __call__(self, ctx: Ctx) -> Any:
        return self.fn(ctx)


def is_expr(raw: Any) -> bool:
    return isinstance(raw, str) and raw.startswith("=")


def compile_value(raw: Any, loc: Loc, scope: Scope) -> Value:
    """``raw`` with every ``=expression`` in it compiled (mappings and lists are walked)."""
    if is_expr(raw):
        e = compile_expr(raw, loc, scope)
        return Value(e, loc, False, None, e.type)
    if isinstance(raw, Mapping):
        items = [(k, compile_value(v, raw.at(k) if hasattr(raw, "at") else loc, scope)) for k, v in raw.items()]
        typ = RecType(frozenset(k for k, _ in items), "this record", "field", {k: v.type for k, v in items if v.type})
        if all(v.static for _, v in items):
            lit = {k: v.literal for k, v in items}
            return Value(lambda ctx: _copy(lit), loc, True, lit, typ)
        return Value(lambda ctx: {k: v(ctx) for k, v in items}, loc, False, None, typ)
    if isinstance(raw, (list, tuple)):
        vals = [compile_value(v, raw.at(i) if hasattr(raw, "at") else loc, scope) for i, v in enumerate(raw)]
        if all(v.static for v in vals):
            lit = [v.literal for v in vals]
            return Value(lambda ctx: _copy(lit), loc, True, lit)
        return Value(lambda ctx: [v(ctx) for v in vals], loc, False)
    if raw is not None and not isinstance(raw, (bool, int, float, str)):
        raise DeclarativeError(loc, f"unsupported value {show(raw)}")
    return Value(lambda ctx: raw, loc, True, raw)


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def plain(v: Any) -> Any:
    """``v`` as plain JSON data (records as dicts, tuples as lists)."""
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v




__all__ = ["Template", "Value", "compile_template", "compile_value", "is_expr", "plain"]
