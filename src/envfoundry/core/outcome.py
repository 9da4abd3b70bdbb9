"""Scores, outcomes and usage: what a finished rollout reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How a rollout ended. Only ``completed`` and ``truncated`` carry a score; the three error
    outcomes are infrastructure or code failures and are never scored (never a reward of 0)."""

    COMPLETED = "completed"
    TRUNCATED = "truncated"
    POLICY_ERROR = "policy_error"
    ENV_ERROR = "env_error"
    GRADER_ERROR = "grader_error"

    @property
    def is_error(self) -> bool:
        return self in (Outcome.POLICY_ERROR, Outcome.ENV_ERROR, Outcome.GRADER_ERROR)


@dataclass(slots=True)
class Score:
    """A grader's verdict: ``value`` in [0, 1], a breakdown of the parts, and why.

    ``passed`` defaults to ``value >= 1.0``; a grader may set it explicitly.
    """

    value: float
    breakdown: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""
    passed: bool | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score value must be in [0, 1], got {self.value!r}")
        if self.passed is None:
            self.passed = self.value >= 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "passed": self.passed,
            "breakdown": self.breakdown,
            "explanation": self.explanation,
        }


@dataclass(slots=True)
class Usage:
    """Token counts reported by the model server (0 for scripted policies)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
