"""The one rule of a resumed run, audit, calibration or training: it keeps its stored configuration.

An option given again with the value it was stored with is fine; with another value it is refused,
naming each option that differs, rather than silently ignored or silently mixing two configurations
in one output. ``run``, ``calibrate``, ``audit`` and ``train`` use this, from Python as from the
command line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import UsageError

Show = Callable[[str, Any], str]


def _show(key: str, value: Any) -> str:
    return "not set" if value is None else str(value)


def differences(stored: Mapping[str, Any], given: Mapping[str, Any], *, what: str,
                names: Mapping[str, str] | None = None, show: Show = _show,
                same: Callable[[str, Any, Any], bool] | None = None, none_is_unset: bool = True) -> list[str]:
    """One phrase per option of ``given`` that is set (not None) and differs from ``stored``:
    ``--seed 7 differs from the run in 'runs/x' (0)``. ``names`` maps a key to its option's name
    (default ``--key-with-dashes``; ``""``: the value says it, as ``--lora``); ``show`` writes a
    value; ``same`` compares (default ``==``). With ``none_is_unset=False`` a None in ``given`` is
    a value like any other (``given`` is a whole effective configuration)."""
    out = []
    for key, value in given.items():
        if value is None and none_is_unset:
            continue
        was = stored.get(key)
        if (same(key, value, was) if same is not None else value == was):
            continue
        name = (names or {}).get(key, "--" + key.replace("_", "-"))
        out.append(f"{name + ' ' if name else ''}{show(key, value)} differs from {what} ({show(key, was)})")
    return out


def refuse_differences(phrases: list[str], *, hint: str = "resume without them or choose another --out") -> None:
    """Raise one :class:`UsageError` listing every phrase of :func:`differences` (none: return)."""
    if phrases:
        raise UsageError("; ".join(phrases) + f"; {hint}")


def stored_wins(stored: Mapping[str, Any], given: Mapping[str, Any], *, what: str,
                names: Mapping[str, str] | None = None, show: Show = _show,
                hint: str = "resume without them or choose another --out") -> dict[str, Any]:
    """The configuration of a resumed piece of work: ``stored``, after refusing every value of
    ``given`` that differs from it (see :func:`differences`)."""
    refuse_differences(differences(stored, given, what=what, names=names, show=show), hint=hint)
    return dict(stored)
