"""The rollout engine and the run store."""

from .engine import RolloutConfig, run_all, run_rollout
from .run import Run, evaluate, evaluate_async
from .store import RunManifest, RunStore
from .summary import summarize

__all__ = [
    "RolloutConfig", "Run", "RunManifest", "RunStore", "evaluate", "evaluate_async",
    "run_all", "run_rollout", "summarize",
]
