"""``--env-arg KEY=VALUE`` strings turned into the types a factory's hints ask for.

A factory says what it takes, ``def make_env(levels: list[int] | None = None, rate: float = 0.1,
mode: Literal["tools", "web"] = "tools", fast: bool = False)``, and receives values of those
types. Understood hints: ``str``, ``int``, ``float``, ``bool`` (true/false, yes/no, on/off, 1/0),
``Literal[...]``, ``pathlib.Path``, enums (by name or value), ``list``/``tuple``/``set``/
``Sequence`` of those (comma-separated: ``levels=1,2``), ``X | None`` (an empty value or ``none``
means None) and unions (tried in order). A parameter without a hint, or with another type,
receives the string. Values that are not strings (a Python caller's) are passed as they are.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from .errors import EnvLoadError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"", "none", "null"}
_SEQUENCES = {list, tuple, set, frozenset, Sequence, MutableSequence, AbstractSet}


class _Bad(ValueError):
    """A value that does not fit a hint; the message says what was expected."""


def convert_args(factory: Callable[..., Any], args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``args`` with every string converted to its parameter's hinted type.

    Raises EnvLoadError (a usage error, exit 2) naming the argument, the value and the type
    expected. Arguments the factory does not declare are left for the caller to refuse.
    """
    hints = _hints(factory)
    out: dict[str, Any] = {}
    for name, value in args.items():
        hint = hints.get(name, inspect.Parameter.empty)
        if not isinstance(value, str) or hint in (inspect.Parameter.empty, Any, str):
            out[name] = value
            continue
        try:
            out[name] = convert(value, hint)
        except _Bad as e:
            raise EnvLoadError(
                f"environment {where!r}: argument {name}={value!r}: {e} ({name}: {type_name(hint)})"
            ) from None
    return out


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's parameter hints, resolved (a class: its ``__init__``'s); {} when it has none."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        resolved = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an unresolvable forward reference: keep what is already a type
        resolved = {}
    out = {}
    for name, p in sig.parameters.items():
        hint = resolved.get(name, p.annotation)
        if isinstance(hint, str):  # a hint that did not resolve: no conversion
            hint = inspect.Parameter.empty
        out[name] = hint
    return out


def convert(raw: str, hint: Any) -> Any:
    """``raw`` as a value of ``hint``; raises ``ValueError`` (subclass) saying what was expected."""
    origin, params = get_origin(hint), get_args(hint)
    if hint in (Any, str, inspect.Parameter.empty):
        return raw
    if origin in (typing.Union, types.UnionType):
        members = [p for p in params if p is not type(None)]
        if len(members) < len(params) and raw.strip().lower() in _NONE:
            return None
        if len(members) == 1:
            return convert(raw, members[0])
        for m in members:
            try:
                return convert(raw, m)
            except _Bad:
                continue
        raise _Bad("expected " + " or ".join(_expect(m) for m in members))
    if origin is Literal:
        for choice in params:
            if str(choice.value if isinstance(choice, enum.Enum) else choice) == raw.strip():
                return choice
        raise _Bad("expected one of " + ", ".join(str(c) for c in params))
    if origin in _SEQUENCES or hint in _SEQUENCES:
        item = params[0] if params and params[0] is not Ellipsis else str
        if origin is tuple and len(params) > 1 and params[1] is not Ellipsis:
            raise _Bad("fixed-length tuples are not supported; use tuple[X, ...]")
        values = []
        for x in (x.strip() for x in raw.split(",")):
            if x:
                try:
                    values.append(convert(x, item))
                except _Bad as e:
                    raise _Bad(f"item {x!r}: {e}") from None
        kind = origin or hint
        if kind is tuple:
            return tuple(values)
        if kind in (set, AbstractSet):
            return set(values)
        return frozenset(values) if kind is frozenset else values
    if hint is bool:
        low = raw.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise _Bad("expected true or false")
    if hint is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise _Bad("expected an integer") from None
    if hint is float:
        try:
            return float(raw.strip())
        except ValueError:
            raise _Bad("expected a number") from None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for member in hint:
            if raw.strip() in (member.name, str(member.value)):
                return member
        raise _Bad("expected one of " + ", ".join(m.name for m in hint))
    if hint is Path:
        return Path(raw)
    return raw  # a type we do not know: the factory gets the string


def _expect(hint: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false"}.get(hint, type_name(hint))


def type_name(hint: Any) -> str:
    """A hint written as in source code: ``list[int] | None``."""
    if hint is type(None):
        return "None"
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in get_args(hint)) + "]"
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in get_args(hint))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if args else name
    return getattr(hint, "__name__", str(hint))


__all__ = ["convert", "convert_args", "type_name"]
