"""envfoundry: build, run, verify and share reinforcement-learning environments for LLM agents."""

__version__ = "0.1.0"

from .core import *  # noqa: E402,F403
from .core import __all__ as _core_all  # noqa: E402
from .envs import load  # noqa: E402
from .rollout import Run, evaluate, evaluate_async  # noqa: E402

__all__ = [*_core_all, "Run", "evaluate", "evaluate_async", "load", "__version__"]
