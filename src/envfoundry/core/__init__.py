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
from .messages import Action, Message, ToolCall, assistant, system, user
from .outcome import Outcome, Score, Usage
from .policy import Policy, PolicyOutput
from .seeding import derive_seed, rng_for
from .task import Task, content_hash
from .tools import Tool, tool
from .world import Change, World

__all__ = [
    "Action", "Change", "EnvLoadError", "EnvfoundryError", "Environment", "Episode",
    "FunctionGrader", "GradeInput", "Grader", "GraderUndecided", "Message", "Outcome", "Policy",
    "PolicyError", "PolicyOutput", "Score", "StepResult", "StoreError", "Task", "Tool",
    "ToolCall", "ToolCallError", "ToolError", "Usage", "UsageError", "World", "assistant",
    "content_hash", "derive_seed", "rng_for", "system", "tool", "user",
]
