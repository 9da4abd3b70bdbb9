"""Checks of JSON values against the TypedDicts that declare them (the run store's records).

Two checks are made from one declaration: :func:`fast_check` says only whether a value is whole,
in one function per TypedDict written from its declaration (a walk of closures costs about three
times as much per message of a record), and :func:`check` says what is wrong and where
(``messages.3.role is missing``). A value of exactly JSON's types passes the fast check or not;
anything else (a ``str`` subclass in a value made in memory) takes the full check.

The types understood are those of JSON: ``str``, ``int`` (never a bool), ``float`` (an int too;
finite), ``bool``, ``None``, ``Any``, ``Literal`` and ``Enum`` choices of strings, unions,
``list[X]``, ``dict[str, X]`` and TypedDicts, whose keys they do not declare are left alone.
"""

# no ``from __future__ import annotations``: the checks are made from evaluated annotations
import enum
import math
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict


class Problem:
    """What is wrong at a path inside a value. The path is collected on the way out (innermost
    part first); ``lead`` is what the innermost object with a lead should have been."""

    __slots__ = ("path", "what", "lead")

    def __init__(self, what: str) -> None:
        self.path: list[str] = []
        self.what = what
        self.lead: tuple[int, str] | None = None

    def text(self) -> str:
        """``messages.0.role is missing``; with a lead, ``usage holds token counts that are not
        integers: usage.completion_tokens is not an integer``."""
        full = ".".join(reversed(self.path))
        if self.lead is None:
            return f"{full} {self.what}"
        at, lead = self.lead
        return f"{'.'.join(reversed(self.path[at:]))} {lead}: {full} {self.what}"


Check = Callable[[Any], Problem | None]
_NONE = type(None)
_MISSING = object()


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """An int (not a bool) or a finite float."""
    return is_int(v) or (isinstance(v, float) and math.isfinite(v))


#: each scalar type: its check, its name in a message, and its fast test of a value ``{x}``
_SCALARS: dict[Any, tuple[Callable[[Any], bool], str, str]] = {
    str: (lambda v: isinstance(v, str), "a string", "type({x}) is str"),
    int: (is_int, "an integer", "type({x}) is int"),
    float: (is_number, "a number", "(type({x}) is int or (type({x}) is float and _isfinite({x})))"),
    bool: (lambda v: isinstance(v, bool), "a boolean", "type({x}) is bool"),
    _NONE: (lambda v: v is None, "null", "{x} is None"),
}


def _is_choice(tp: Any) -> bool:
    return get_origin(tp) is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum))


def _choices(tp: Any) -> list[str]:
    return [str(a) for a in get_args(tp)] if get_origin(tp) is Literal else [m.value for m in tp]


def _phrase(tp: Any) -> str:
    origin = get_origin(tp) or tp
    if origin is list:
        return "a list"
    if origin is dict or is_typeddict(origin):
        return "an object"
    if _is_choice(tp):
        return "one of " + ", ".join(_choices(tp))
    return _SCALARS[origin][1]


# ------------------------------------------------------------------------------------ the full check
def check(tp: Any, leads: Mapping[Any, str] | None = None, required: frozenset[str] | None = None) -> Check:
    """The check of a value against ``tp``. ``leads`` says, for a TypedDict, what an object of it
    should have been (told before a problem found in one); ``required`` replaces the required keys
    of ``tp`` itself when it is a TypedDict."""
    leads = leads or {}
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return lambda v: None
    if origin in (Union, types.UnionType):
        alts = [a for a in args if a is not _NONE]
        if len(alts) == 1:  # X | None: X's own check, which says what inside X is wrong
            inner = check(alts[0], leads)
            return lambda v: None if v is None else inner(v)
        checks = [check(a, leads) for a in args]
        what = "is not " + " or ".join(_phrase(a) for a in alts)
        return lambda v: None if any(c(v) is None for c in checks) else Problem(what)
    if _is_choice(tp):
        allowed = frozenset(_choices(tp))
        listed = ", ".join(sorted(allowed))
        return lambda v: None if isinstance(v, str) and v in allowed else Problem(
            f"{str(v)[:40]!r} is not one of {listed}")
    if is_typeddict(tp):
        return _check_typeddict(tp, leads, required)
    if origin is list or origin is dict:
        item = check(args[-1], leads) if args else None
        return lambda v: _first(v, list if origin is list else dict, item)
    ok, phrase, _ = _SCALARS[tp]
    what = f"is not {phrase}"
    return lambda v: None if ok(v) else Problem(what)


def _first(v: Any, kind: type, item: Check | None) -> Problem | None:
    """The first problem of ``v``, a list or a dict (``kind``) of values checked by ``item``."""
    if not isinstance(v, kind):
        return Problem(f"is not {'a list' if kind is list else 'an object'}")
    if item is None:
        return None
    for k, x in enumerate(v) if kind is list else v.items():
        p = item(x)
        if p is not None:
            p.path.append(str(k))
            return p
    return None


def _check_typeddict(td: Any, leads: Mapping[Any, str], required: frozenset[str] | None) -> Check:
    """Each declared field in order: a required one present, a present one of its type."""
    hints = get_type_hints(td)
    need = td.__required_keys__ if required is None else required
    fields = [(name, check(hints[name], leads), name in need) for name in td.__annotations__]
    lead = leads.get(td)

    def check_object(v: Any) -> Problem | None:
        p = None if isinstance(v, dict) else Problem("is not an object")
        for name, field_check, is_required in fields if p is None else ():
            x = v.get(name, _MISSING)
            p = (Problem("is missing") if is_required else None) if x is _MISSING else field_check(x)
            if p is not None:
                p.path.append(name)
                break
        if p is not None and lead is not None and p.lead is None:
            p.lead = (len(p.path), lead)
        return p
    return check_object


# ------------------------------------------------------------------------------------ the fast check
def fast_check(td: Any, required: frozenset[str] | None = None) -> Callable[[Any], bool]:
    """Whether a value of exactly JSON's types is an object of the TypedDict ``td`` (with
    ``required`` in place of its required keys): a function written from its declaration."""
    consts: dict[str, Any] = {"_MISSING": _MISSING, "_isfinite": math.isfinite}
    out: dict[Any, str] = {}
    name = _fast_source(td, required, consts, out)
    namespace = dict(consts)
    exec(compile("\n".join(out.values()), f"<{__name__}: {td.__name__}>", "exec"), namespace)  # noqa: S102
    fn: Callable[[Any], bool] = namespace[name]
    return fn


def _fast_source(td: Any, required: frozenset[str] | None, consts: dict[str, Any], out: dict[Any, str]) -> str:
    """The name of ``valid_<td>(v) -> bool``; its source is added to ``out`` (with those of the
    TypedDicts it holds) and the constants it uses to ``consts``."""
    name = f"valid_{td.__name__}"
    if td in out:
        return name
    out[td] = ""
    hints = get_type_hints(td)
    need = td.__required_keys__ if required is None else required
    lines = [f"def {name}(v):", "    if type(v) is not dict:", "        return False"]
    for key in td.__annotations__:
        test = _fast_test(hints[key], "x", 0, consts, out)
        lines.append(f"    x = v.get({key!r}, _MISSING)")
        lines.append(f"    if x is _MISSING or not ({test}):" if key in need
                     else f"    if x is not _MISSING and not ({test}):")
        lines.append("        return False")
    out[td] = "\n".join([*lines, "    return True", ""])
    return name


def _fast_test(tp: Any, x: str, depth: int, consts: dict[str, Any], out: dict[Any, str]) -> str:
    """A Python expression: whether ``x`` is a value of ``tp`` made of exactly JSON's types."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return "True"
    if origin in (Union, types.UnionType):
        return " or ".join(f"({_fast_test(a, x, depth, consts, out)})" for a in args)
    if _is_choice(tp):
        name = f"_C{len(consts)}"
        consts[name] = frozenset(_choices(tp))
        return f"type({x}) is str and {x} in {name}"
    if is_typeddict(tp):
        return f"{_fast_source(tp, None, consts, out)}({x})"
    if origin is list or origin is dict:
        kind = "list" if origin is list else "dict"
        if not args or args[-1] is Any:
            return f"type({x}) is {kind}"
        y = f"y{depth}"
        each = _fast_test(args[-1], y, depth + 1, consts, out)
        return f"type({x}) is {kind} and all({each} for {y} in {x}{'' if kind == 'list' else '.values()'})"
    return str(_SCALARS[tp][2]).format(x=x)
