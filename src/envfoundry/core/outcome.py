"""Scores, outcomes and usage: what a finished rollout reports."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from enum import StrEnum, nonmember
from typing import Any


class Outcome(StrEnum):
    """How a rollout ended. Only ``completed`` and ``truncated`` carry a score; the three error
    outcomes are infrastructure or code failures and are never scored (never a reward of 0).

    The groups of outcomes every part uses are defined here once, as frozensets of the values (a
    record's ``outcome`` string is a member): :attr:`SCORED`, :attr:`ERRORS` and
    :attr:`CODE_ERRORS`."""

    COMPLETED = "completed"
    TRUNCATED = "truncated"
    POLICY_ERROR = "policy_error"
    ENV_ERROR = "env_error"
    GRADER_ERROR = "grader_error"

    #: the outcomes that carry a score and count in the pass rate
    SCORED = nonmember(frozenset({COMPLETED, TRUNCATED}))
    #: the outcomes that carry no score: run again by ``--resume``, masked in training, never a 0
    ERRORS = nonmember(frozenset({POLICY_ERROR, ENV_ERROR, GRADER_ERROR}))
    #: the errors of the environment's own code (its tools, world or graders), not of the policy
    CODE_ERRORS = nonmember(frozenset({ENV_ERROR, GRADER_ERROR}))

    @property
    def is_error(self) -> bool:
        return self in Outcome.ERRORS

    @property
    def is_scored(self) -> bool:
        return self in Outcome.SCORED


@dataclass(slots=True)
class Score:
    """A grader's verdict: ``value`` in [0, 1], a breakdown of the parts, and why.

    ``passed`` defaults to ``value >= 1.0``; a grader may set it explicitly. A value or ``passed``
    of another numeric type (numpy's) is stored as a float and a bool, so every record holds JSON's
    own types; a breakdown that is not a dict or an explanation that is not a string is the
    grader's bug (a TypeError: the rollout is a ``grader_error``).
    """

    value: float
    breakdown: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""
    passed: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise TypeError(f"score value must be a number, got {type(self.value).__name__} {self.value!r:.60}")
        self.value = float(self.value)
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score value must be in [0, 1], got {self.value!r}")
        if not isinstance(self.breakdown, dict):
            raise TypeError(f"score breakdown must be a dict, got {type(self.breakdown).__name__}")
        if not isinstance(self.explanation, str):
            raise TypeError(f"score explanation must be a string, got {type(self.explanation).__name__}")
        self.passed = self.value >= 1.0 if self.passed is None else bool(self.passed)

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
