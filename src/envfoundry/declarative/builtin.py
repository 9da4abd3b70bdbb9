"""envfoundry's own declarative environments, registered by name (entry points in pyproject.toml).

Their folders hold no Python: ``envfoundry/envs/ledger/`` is YAML, CSV and Markdown, loaded by
:func:`~envfoundry.declarative.load_folder` like any folder a user writes.
"""

from __future__ import annotations

from pathlib import Path

from ..core.env import Environment
from .build import load_folder

ENVS_DIR = Path(__file__).resolve().parent.parent / "envs"


def ledger(judge: str | None = None, judge_samples: int = 1, base_url: str | None = None,
           api_key_env: str | None = None) -> Environment:
    """``ledger``: a fund's general ledger (reconciliations, duplicates, fee accruals, FX
    revaluation, NAV, closed periods, escalations); ``judge``: a model spec for its rubric."""
    args = {"judge": judge, "judge_samples": str(judge_samples), "base_url": base_url, "api_key_env": api_key_env}
    return load_folder(ENVS_DIR / "ledger", {k: v for k, v in args.items() if v is not None})


__all__ = ["ENVS_DIR", "ledger"]
