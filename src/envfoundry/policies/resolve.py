"""Turn a model spec such as ``scripted:oracle`` into a policy."""

from __future__ import annotations

from typing import Any

from ..core.errors import UsageError
from ..core.policy import Policy
from .scripted import SCRIPTED


def resolve_policy(spec: str, **options: Any) -> Policy:
    """``scripted:oracle|noop|random``; model specs arrive with the model layer."""
    kind, _, rest = spec.partition(":")
    if kind == "scripted":
        cls = SCRIPTED.get(rest)
        if cls is None:
            raise UsageError(
                f"unknown scripted policy {rest!r} (choose from: {', '.join(SCRIPTED)})"
            )
        return cls()
    raise UsageError(
        f"unknown model spec {spec!r}: use scripted:oracle, scripted:noop or scripted:random"
    )
