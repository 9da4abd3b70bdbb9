"""Every function an expression may call, by name: :data:`FUNCTIONS` everywhere, :data:`RANDOM`
(chance) only in generator steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .chance import RANDOM
from .dates import DATE_FUNCTIONS
from .functions import GENERAL

#: name -> (function, fewest arguments, most arguments (None: any))
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {**GENERAL, **DATE_FUNCTIONS}

__all__ = ["FUNCTIONS", "RANDOM"]
