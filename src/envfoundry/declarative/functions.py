"""The functions an expression may call: arithmetic, text, lists, dates and (in generators) chance.

Every function checks its arguments and raises :class:`ExprError` with a message a domain expert
can act on. Nothing here touches the host: no files, no imports, no attribute access. Results are
bounded in size (:data:`MAX_ITEMS`), so no expression can exhaust memory.

Dates are ISO text (``2024-03-31``); a month (period) is ``2024-03``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .errors import ExprError

MAX_ITEMS = 1_000_000  # longest text or list an expression may build
_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?#?0?(\d{0,3})?[,_]?(?:\.(\d{1,2}))?[eEfFgGdns%xXob]?$")


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, Mapping):
        return "record"
    if isinstance(v, (list, tuple)):
        return "list"
    return type(v).__name__


def show(v: Any, n: int = 40) -> str:
    s = repr(v) if not isinstance(v, Mapping) else "{" + ", ".join(f"{k}: {show(x, 12)}" for k, x in
                                                                    list(v.items())[:4]) + "}"
    return s if len(s) <= n else s[: n - 3] + "..."


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def num(v: Any, what: str = "a number") -> float | int:
    if is_num(v):
        if isinstance(v, float) and not math.isfinite(v):
            raise ExprError(f"expects {what}, got {v!r}")
        return v
    raise ExprError(f"expects {what}, got {type_name(v)} {show(v)}")


def text(v: Any, what: str = "text") -> str:
    if isinstance(v, str):
        return v
    raise ExprError(f"expects {what}, got {type_name(v)} {show(v)}")


def seq(v: Any, what: str = "a list") -> Sequence[Any]:
    if isinstance(v, (list, tuple)):
        return v
    raise ExprError(f"expects {what}, got {type_name(v)} {show(v)}")


def integer(v: Any, what: str = "a whole number") -> int:
    x = num(v, what)
    if isinstance(x, float):
        if not x.is_integer():
            raise ExprError(f"expects {what}, got {x!r}")
        return int(x)
    return x


def capped(v: Any) -> Any:
    if isinstance(v, (str, list)) and len(v) > MAX_ITEMS:
        raise ExprError(f"the result would hold {len(v)} items; at most {MAX_ITEMS} are allowed")
    return v


# ------------------------------------------------------------------ numbers
def f_round(x: Any, places: Any = 0) -> float | int:
    """Round half away from zero (what accountants expect: 2.675 -> 2.68), not banker's rounding."""
    v, p = num(x), integer(places, "a number of decimal places")
    if not -10 <= p <= 12:
        raise ExprError(f"round: decimal places must be between -10 and 12, got {p}")
    try:
        d = Decimal(repr(v)).quantize(Decimal(1).scaleb(-p), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ExprError(f"round: cannot round {v!r} to {p} places") from None
    return int(d) if p <= 0 else float(d)


def f_money(x: Any) -> float:
    return float(f_round(x, 2))


def f_pow(x: Any, y: Any) -> float | int:
    a, b = num(x), num(y)
    if abs(b) > 64 or (abs(a) > 1e6 and abs(b) > 8):
        raise ExprError(f"pow: {a!r} to the power {b!r} is too large")
    try:
        r = a ** b
    except (OverflowError, ZeroDivisionError) as e:
        raise ExprError(f"pow: {e}") from None
    if isinstance(r, complex):
        raise ExprError(f"pow: {a!r} to the power {b!r} is not a real number")
    return r


def f_sqrt(x: Any) -> float:
    v = num(x)
    if v < 0:
        raise ExprError(f"sqrt of a negative number ({v!r})")
    return math.sqrt(v)


def _extreme(fn: Callable[..., Any], name: str, args: tuple[Any, ...]) -> Any:
    items = list(seq(args[0])) if len(args) == 1 else list(args)
    if not items:
        raise ExprError(f"{name} of an empty list")
    if all(is_num(v) for v in items) or all(isinstance(v, str) for v in items):
        return fn(items)
    raise ExprError(f"{name} compares numbers with numbers or text with text, got "
                    + ", ".join(sorted({type_name(v) for v in items})))


def f_min(*args: Any) -> Any:
    return _extreme(min, "min", args)


def f_max(*args: Any) -> Any:
    return _extreme(max, "max", args)


def f_sum(items: Any) -> float | int:
    total: float | int = 0
    for v in seq(items):
        total += num(v, "a list of numbers")
    return total


def f_int(x: Any) -> int:
    if isinstance(x, str):
        try:
            return int(x.strip())
        except ValueError:
            raise ExprError(f"int: {x!r} is not a whole number") from None
    v = num(x)
    return int(v)


def f_num(x: Any) -> float | int:
    if is_num(x):
        return x
    if isinstance(x, str):
        s = x.strip().replace(",", "").lstrip("$")
        try:
            v = float(s)
        except ValueError:
            raise ExprError(f"num: {x!r} is not a number") from None
        if not math.isfinite(v):
            raise ExprError(f"num: {x!r} is not a finite number")
        return int(v) if re.fullmatch(r"[-+]?\d+", s) else v
    raise ExprError(f"num expects text or a number, got {type_name(x)}")


def f_str(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return repr(x)
    if isinstance(x, (str, int, float)):
        return str(x)
    raise ExprError(f"str expects text or a number, got {type_name(x)}")


# ------------------------------------------------------------------ text
def f_len(x: Any) -> int:
    if isinstance(x, (str, list, tuple, Mapping)):
        return len(x)
    raise ExprError(f"len expects text, a list or a record, got {type_name(x)}")


def f_pad(x: Any, width: Any) -> str:
    w = integer(width, "a width")
    if not 0 <= w <= 100:
        raise ExprError(f"pad: width must be between 0 and 100, got {w}")
    return (str(integer(x)) if is_num(x) else text(x)).zfill(w)


def f_contains(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        return text(b) in a
    if isinstance(a, (list, tuple)):
        return b in a
    if isinstance(a, Mapping):
        return b in a
    raise ExprError(f"contains expects text, a list or a record first, got {type_name(a)}")


def f_replace(s: Any, a: Any, b: Any) -> str:
    src, old, new = text(s), text(a), text(b)
    if old and len(new) > len(old) and src.count(old) * (len(new) - len(old)) + len(src) > MAX_ITEMS:
        raise ExprError("replace: the result would be too long")
    return src.replace(old, new) if old else src


def f_split(s: Any, sep: Any) -> list[str]:
    sp = text(sep)
    if not sp:
        return list(text(s))
    return text(s).split(sp)


def f_join(items: Any, sep: Any) -> str:
    parts = [f_str(v) for v in seq(items)]
    return capped(text(sep).join(parts))


def f_fmt(x: Any, spec: Any) -> str:
    return format_value(x, text(spec))


def format_value(x: Any, spec: str) -> str:
    """``x`` formatted by a format spec (``,.2f``, ``>8``, ``05d``...) of bounded width and precision."""
    if not _SPEC.match(spec):
        raise ExprError(f"format {spec!r} is not a supported format (e.g. ',.2f', '.4f', '>10', '05d', '.1%')")
    if x is None:
        return ""
    if isinstance(x, bool):
        x = f_str(x)
    if not isinstance(x, (str, int, float)):
        raise ExprError(f"cannot format {type_name(x)} with {spec!r}")
    try:
        return format(x, spec)
    except (ValueError, TypeError) as e:
        raise ExprError(f"cannot format {show(x)} with {spec!r}: {e}") from None


def f_swap(s: Any, i: Any, j: Any) -> str:
    """``s`` with the characters at ``i`` and ``j`` swapped (transposed digits)."""
    t, a, b = text(s), integer(i), integer(j)
    n = len(t)
    if not (-n <= a < n and -n <= b < n):
        raise ExprError(f"swap: positions {a} and {b} are outside the text ({n} characters)")
    chars = list(t)
    chars[a], chars[b] = chars[b], chars[a]
    return "".join(chars)


# ------------------------------------------------------------------ lists and records
def f_range(a: Any, b: Any = None) -> list[int]:
    lo, hi = (0, integer(a)) if b is None else (integer(a), integer(b))
    if hi - lo > 100_000:
        raise ExprError(f"range: at most 100000 numbers, asked for {hi - lo}")
    return list(range(lo, hi))


def f_concat(*lists: Any) -> list[Any]:
    out: list[Any] = []
    for x in lists:
        out.extend(seq(x, "lists"))
    return capped(out)


def f_flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for x in seq(items):
        out.extend(seq(x, "a list of lists"))
    return capped(out)


def f_unique(items: Any) -> list[Any]:
    out, seen = [], []
    for v in seq(items):
        if v not in seen:
            seen.append(v)
            out.append(v)
    return out


def f_reverse(items: Any) -> Any:
    if isinstance(items, str):
        return items[::-1]
    return list(seq(items))[::-1]


def record(x: Any, what: str = "a record") -> Mapping[str, Any]:
    if isinstance(x, Mapping):
        return x
    raise ExprError(f"expects {what}, got {type_name(x)} {show(x)}")


def f_keys(d: Any) -> list[str]:
    return list(record(d))


def f_values(d: Any) -> list[Any]:
    return list(record(d).values())


def f_merge(*ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in ds:
        out.update(record(d, "records"))
    return out


def f_coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)



#: name -> (function, fewest arguments, most arguments (None: any))
GENERAL: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "abs": (lambda x: abs(num(x)), 1, 1),
    "round": (f_round, 1, 2),
    "money": (f_money, 1, 1),
    "floor": (lambda x: math.floor(num(x)), 1, 1),
    "ceil": (lambda x: math.ceil(num(x)), 1, 1),
    "pow": (f_pow, 2, 2),
    "sqrt": (f_sqrt, 1, 1),
    "min": (f_min, 1, None),
    "max": (f_max, 1, None),
    "int": (f_int, 1, 1),
    "num": (f_num, 1, 1),
    "str": (f_str, 1, 1),
    "len": (f_len, 1, 1),
    "upper": (lambda s: text(s).upper(), 1, 1),
    "lower": (lambda s: text(s).lower(), 1, 1),
    "strip": (lambda s: text(s).strip(), 1, 1),
    "pad": (f_pad, 2, 2),
    "contains": (f_contains, 2, 2),
    "startswith": (lambda s, p: text(s).startswith(text(p)), 2, 2),
    "endswith": (lambda s, p: text(s).endswith(text(p)), 2, 2),
    "replace": (f_replace, 3, 3),
    "split": (f_split, 2, 2),
    "join": (f_join, 2, 2),
    "fmt": (f_fmt, 2, 2),
    "swap": (f_swap, 3, 3),
    "range": (f_range, 1, 2),
    "concat": (f_concat, 1, None),
    "flatten": (f_flatten, 1, 1),
    "unique": (f_unique, 1, 1),
    "reverse": (f_reverse, 1, 1),
    "keys": (f_keys, 1, 1),
    "values": (f_values, 1, 1),
    "merge": (f_merge, 1, None),
    "coalesce": (f_coalesce, 1, None),
}


__all__ = ["GENERAL", "MAX_ITEMS", "format_value", "is_num", "type_name"]
