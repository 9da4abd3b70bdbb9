"""The grader contract: a pure function of a finished episode to a :class:`Score`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .messages import Message
from .outcome import Score
from .task import Task
from .world import World


class _Finished(Protocol):
    """What :meth:`GradeInput.from_episode` reads of an episode (an :class:`~.env.Episode`)."""

    task: Task
    messages: list[Message]
    world_before: World | None
    world: World | None
    truncated: bool


@dataclass(slots=True, frozen=True)
class GradeInput:
    """Everything a grader may read. Graders must not modify any of it."""

    task: Task
    messages: tuple[Message, ...]
    final: str
    world_before: World | None
    world_after: World | None
    truncated: bool

    @classmethod
    def from_episode(cls, ep: _Finished) -> GradeInput:
        final = ""
        for m in reversed(ep.messages):
            if m.role == "assistant":
                final = m.content
                break
        return cls(
            task=ep.task,
            messages=tuple(ep.messages),
            final=final,
            world_before=ep.world_before,
            world_after=ep.world,
            truncated=ep.truncated,
        )


@runtime_checkable
class Grader(Protocol):
    """Anything with a ``name`` and ``grade(GradeInput) -> Score``."""

    name: str

    def grade(self, g: GradeInput) -> Score: ...


@dataclass(slots=True, frozen=True)
class FunctionGrader:
    """Wraps a plain function ``fn(GradeInput) -> Score`` as a :class:`Grader`."""

    name: str
    fn: Callable[[GradeInput], Score]
    weight: float = 1.0

    def grade(self, g: GradeInput) -> Score:
        return self.fn(g)


def combine(scores: list[tuple[str, float, Score]]) -> Score:
    """Weighted mean of several graders' values; passed only if every grader passed."""
    if len(scores) == 1:
        return scores[0][2]
    total = sum(w for _, w, _ in scores) or 1.0
    value = sum(w * s.value for _, w, s in scores) / total
    return Score(
        value=min(1.0, max(0.0, value)),
        breakdown={n: s.to_dict() for n, _, s in scores},
        explanation="; ".join(f"{n}: {s.explanation}" for n, _, s in scores if s.explanation),
        passed=all(bool(s.passed) for _, _, s in scores),
    )
