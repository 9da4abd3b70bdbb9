"""The contract every other part of envfoundry imports from."""

from .env import Environment, Episode, StepResult
from .errors import (
    EnvfoundryError,
    EnvLoadError,
    GraderUndecided,
    PolicyError,
    StoreError,
    ToolCallError,
    ToolError,
    UsageError,
)
from .grader import FunctionGrader, GradeInput, Grader
from .loading import canonical_spec, load
from .messages import Action, Message, ToolCall, assistant, system, user
from .outcome import Outcome, Score, Usage
from .policy import Policy, PolicyOutput
from .procedural import ProceduralTasks
from .registry import register_env
from .seeding import derive_seed, rng_for
from .task import Task, content_hash
from .tools import Tool, tool
from .world import Change, World

__all__ = [
    "Action", "Change", "EnvLoadError", "EnvfoundryError", "Environment", "Episode",
    "FunctionGrader", "GradeInput", "Grader", "GraderUndecided", "Message", "Outcome", "Policy",
    "PolicyError", "PolicyOutput", "ProceduralTasks", "Score", "StepResult", "StoreError", "Task", "Tool",
    "ToolCall", "ToolCallError", "ToolError", "Usage", "UsageError", "World", "assistant", "canonical_spec",
    "content_hash", "derive_seed", "load", "register_env", "rng_for", "system", "tool", "user",
]
