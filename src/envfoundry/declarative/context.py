"""What an expression is checked against and evaluated with: its scope (names, tables, whether
chance and the world are available), static types of records, and the evaluation context."""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ExprError

WORK_BUDGET = 2_000_000  # items an evaluation may visit (list forms, ranges, copies)
BOUND = ("it", "row", "i", "outer")


class WorldView(Protocol):
    """What expressions read of a world: rows of a table, one row by key, the keys."""

    def rows(self, table: str) -> list[Mapping[str, Any]]: ...

    def get(self, table: str, key: str) -> Mapping[str, Any] | None: ...

    def keys(self, table: str) -> list[str]: ...


class Ctx:
    """The values an evaluation sees: variables, the world (if any), the RNG (generators only)."""

    __slots__ = ("vars", "world", "rng", "budget")

    def __init__(self, vars: dict[str, Any] | None = None, world: WorldView | None = None,
                 rng: random.Random | None = None) -> None:
        self.vars = vars if vars is not None else {}
        self.world = world
        self.rng = rng
        self.budget = WORK_BUDGET

    def spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise ExprError(f"the expression does too much work (more than {WORK_BUDGET} items)")



# ------------------------------------------------------------------ static types
@dataclass(frozen=True)
class RecType:
    """A record whose fields are known (a table's row, a tool call)."""

    fields: frozenset[str]
    what: str  # "table 'entries'" -> "table 'entries' has no column 'x'"
    noun: str = "column"
    sub: Mapping[str, Any] = field(default_factory=dict)  # field -> its static type


@dataclass(frozen=True)
class ListType:
    item: Any


def table_type(name: str, columns: Iterable[str]) -> RecType:
    return RecType(frozenset(columns), f"table {name!r}")


@dataclass
class Scope:
    """What an expression may name: variables (with static types where known), tables (their
    columns), and whether chance (random functions) and the world are available here."""

    names: dict[str, Any]
    tables: dict[str, frozenset[str]] = field(default_factory=dict)
    random: bool = False
    world: bool = True
    calculator: bool = False
    where: str = ""  # "in tool 'post_entry'" (for messages)

    def with_names(self, extra: Mapping[str, Any]) -> Scope:
        return Scope({**self.names, **extra}, self.tables, self.random, self.world, self.calculator, self.where)


def short(src: str, n: int = 160) -> str:
    return src if len(src) <= n else src[: n // 2 - 2] + " ... " + src[-(n // 2 - 3):]


def suggest(name: str, known: Iterable[str]) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
        # `{a: =f(x, y)}`: YAML's flow mapping splits at the comma
        return ("; an expression with a comma inside {...} or [...] must be quoted, e.g. "
                "{amount: \"=round(x, 2)\"}")
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def listing(known: Iterable[str], n: int = 12) -> str:
    items = sorted(known)
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")



__all__ = ["BOUND", "WORK_BUDGET", "Ctx", "ListType", "RecType", "Scope", "WorldView", "listing", "short", "suggest",
           "table_type"]
