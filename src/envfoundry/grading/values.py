"""Values as users write them in labels and scores: numbers (also written as text), labels,
ids; and :class:`Problems`, bad values collected over a whole input and reported at once. Pure
functions of the values (reading files is :mod:`envfoundry.quality.agree.tables`)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..core.errors import UsageError

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


def show_value(v: Any, limit: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


class Problems:
    """Bad values collected over a whole input and reported at once: each kind of problem with its
    count and a few examples (``'Unsure' x4 (l.csv:3, l.csv:7, ...)``)."""

    _NO_VALUE = object()

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, list[str]]] = {}

    def add(self, what: str, where: str, value: Any = _NO_VALUE, *, text: str | None = None) -> None:
        """Note one bad ``value`` (shown as JSON, or as ``text`` when given) at ``where``."""
        shown = text if text is not None else "" if value is Problems._NO_VALUE else show_value(value, 40)
        self._groups.setdefault(what, {}).setdefault(shown, []).append(where)

    def __bool__(self) -> bool:
        return bool(self._groups)

    def count(self, what: str) -> int:
        return sum(len(w) for w in self._groups.get(what, {}).values())

    def lines(self) -> list[str]:
        out = []
        for what, by_value in self._groups.items():
            n = sum(len(w) for w in by_value.values())
            ex = []
            for shown, wheres in list(by_value.items())[:3]:
                at = ", ".join(wheres[:2]) + (", ..." if len(wheres) > 2 else "")
                times = f" x{len(wheres)}" if len(wheres) > 1 else ""
                ex.append(f"{shown}{times} ({at})" if shown else at)
            more = f", and {len(by_value) - 3} other value(s)" if len(by_value) > 3 else ""
            out.append(f"{n} {what}: {', '.join(ex)}{more}")
        return out

    def raise_if_any(self, hint: str = "") -> None:
        if self._groups:
            raise UsageError("; ".join(self.lines()) + (f"; {hint}" if hint else ""))


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(v: Any) -> int | float | None:
    """A finite number from a JSON number or its text (``"1"``, ``" 0.5 "``, ``"1e3"``); whole numbers as
    int; None for anything else."""
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        v = float(v.strip())
    if not is_number(v) or not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v)


def parse_label(v: Any) -> int | float | str | None:
    """A label as a number (true/false as 1/0, numbers written as text read as numbers) or
    stripped text; None for a missing label (null, empty text). ValueError for anything else."""
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if is_number(v):
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return number(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        n = number(s)
        return s if n is None else n
    raise ValueError("not a number, true/false or text")


def id_value(v: Any) -> str | None:
    """An id: text (stripped) or a whole number (``7`` and ``7.0`` read as "7"); None if neither."""
    if isinstance(v, str):
        return v.strip() or None
    if is_number(v) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return None
