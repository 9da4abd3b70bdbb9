"""Field predicates for declarative graders: ``eq(3)``, ``le(budget)``, ``same_records([...], on=...)``.

A predicate is called with one field value (or :data:`MISSING` when the record lacks the field)
and says whether it holds; ``describe()`` is what a score breakdown shows. A value of the wrong
shape fails the check instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


#: the value a predicate receives for a field the record does not have
MISSING: Any = _Missing()


class Pred:
    """A check of one field value with a human-readable description."""

    __slots__ = ()

    def __call__(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _cmp(fn: Callable[[Any], bool], value: Any) -> bool:
    if value is MISSING:
        return False
    try:
        return bool(fn(value))
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return False  # a value of the wrong shape fails the check


@dataclass(frozen=True, slots=True)
class Eq(Pred):
    value: Any

    def __call__(self, v: Any) -> bool:
        return v is not MISSING and v == self.value

    def describe(self) -> str:
        return f"== {self.value!r}"


@dataclass(frozen=True, slots=True)
class Compare(Pred):
    """``op`` is one of ``<``, ``<=``, ``>``, ``>=``, ``!=``."""

    op: str
    value: Any

    def __call__(self, v: Any) -> bool:
        x = self.value
        fns = {"<": lambda a: a < x, "<=": lambda a: a <= x, ">": lambda a: a > x,
               ">=": lambda a: a >= x, "!=": lambda a: a != x}
        return _cmp(fns[self.op], v)

    def describe(self) -> str:
        return f"{self.op} {self.value!r}"


@dataclass(frozen=True, slots=True)
class OneOf(Pred):
    values: tuple[Any, ...]

    def __call__(self, v: Any) -> bool:
        return v is not MISSING and v in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(x) for x in self.values)


@dataclass(frozen=True, slots=True)
class SameRecords(Pred):
    """A list of dicts equal to ``expected`` as a multiset, comparing only the keys in ``on``."""

    expected: tuple[tuple[Any, ...], ...]
    on: tuple[str, ...]

    def __call__(self, v: Any) -> bool:
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, Mapping) for x in v):
            return False
        got = sorted(tuple(x.get(k) for k in self.on) for x in v)
        return got == sorted(self.expected)

    def describe(self) -> str:
        rows = ["{" + ", ".join(f"{k}: {x!r}" for k, x in zip(self.on, r, strict=True)) + "}"
                for r in self.expected]
        return "exactly [" + ", ".join(rows) + "]"


@dataclass(frozen=True, slots=True)
class Satisfies(Pred):
    """Any callable, with a description for the breakdown."""

    fn: Callable[[Any], bool]
    description: str

    def __call__(self, v: Any) -> bool:
        return _cmp(self.fn, v)

    def describe(self) -> str:
        return self.description


def eq(value: Any) -> Pred:
    return Eq(value)


def ne(value: Any) -> Pred:
    return Compare("!=", value)


def lt(value: Any) -> Pred:
    return Compare("<", value)


def le(value: Any) -> Pred:
    return Compare("<=", value)


def gt(value: Any) -> Pred:
    return Compare(">", value)


def ge(value: Any) -> Pred:
    return Compare(">=", value)


def one_of(*values: Any) -> Pred:
    return OneOf(tuple(values))


def same_records(expected: Sequence[Mapping[str, Any]], *, on: Sequence[str]) -> Pred:
    """``items == [...]`` ignoring order and every key not in ``on``."""
    keys = tuple(on)
    return SameRecords(tuple(tuple(r.get(k) for k in keys) for r in expected), keys)


def satisfies(fn: Callable[[Any], bool], description: str) -> Pred:
    return Satisfies(fn, description)


def as_pred(p: Any) -> Pred:
    """A :class:`Pred` as is; any other value means equality."""
    return p if isinstance(p, Pred) else Eq(p)
