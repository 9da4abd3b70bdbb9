"""Old import paths of names that moved (issue 20: the agree workflow went to
:mod:`envfoundry.quality.agree`, the computation stayed in grading under new module names). They
work for one more release, each with a DeprecationWarning naming the new path. The new module is
imported by name on first use, so grading itself imports nothing above core."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def forwarder(old: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for module ``old`` whose names ``moved`` (name -> new module)."""

    def __getattr__(name: str) -> Any:
        new = moved.get(name)
        if new is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} is now {new}.{name}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__


def names(module: str, *attrs: str) -> dict[str, str]:
    """``{attr: module}`` for each of ``attrs``."""
    return dict.fromkeys(attrs, module)
