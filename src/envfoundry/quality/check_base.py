"""What every ``envfoundry check`` shares: results, configuration, and playing scripted episodes
step by step (alone or several in lock-step) with a fingerprint of how each one ended."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..core.env import Environment, Episode, exception_line
from ..core.errors import UsageError
from ..core.task import Task


@dataclass
class CheckResult:
    name: str
    status: str  # "pass" | "fail" | "skipped"
    detail: str = ""
    task_id: str | None = None
    example: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckConfig:
    """How much to sample. ``noop_max``/``random_max`` are the pass rates above which a probe that
    does no real work counts as too successful; ``subprocess``: also regenerate the tasks in a
    fresh process (needs the environment's spec)."""

    tasks: int = 20
    samples: int = 2
    seed: int = 0
    split: str | None = None
    noop_max: float = 0.0
    random_max: float = 0.1
    subprocess: bool = True

    def __post_init__(self) -> None:
        for what, flag, v in (("tasks to check", "--limit", self.tasks), ("samples", "--samples", self.samples)):
            if v < 1:
                raise UsageError(f"the number of {what} ({flag}) must be at least 1, got {v}")


def of(n: int, total: int, noun: str) -> str:
    """``"3 of 20 tasks"``."""
    return f"{n} of {total} {noun}"


def short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


crash_text = exception_line  # the one home of this format: core.env
@dataclass
class Play:
    """One scripted episode: the episode and the error that ended it early, if any."""

    ep: Episode
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or self.ep.terminated or self.ep.truncated


async def _step(play: Play, pol: Any) -> None:
    try:
        out = await pol.act(play.ep)
        play.ep.step(out.action)
    except Exception as e:  # noqa: BLE001 - a broken environment is what the checks look for
        play.error = crash_text(e)


def play_together(env: Environment, runs: Sequence[tuple[Task, int]], pols: Sequence[Any]) -> list[Play]:
    """Reset every (task, seed) first, then step the episodes in lock-step, one action each in
    turn, in the order given; each plays until it ends."""
    plays = [Play(env.reset(t, seed=s)) for t, s in runs]

    async def go() -> None:
        live = list(zip(plays, pols, strict=True))
        while live:
            for p, pol in live:
                await _step(p, pol)
            live = [(p, pol) for p, pol in live if not p.done]

    asyncio.run(go())
    return plays


def play(env: Environment, task: Task, seed: int, pol: Any) -> Play:
    return play_together(env, [(task, seed)], [pol])[0]


def fingerprint(env: Environment, p: Play) -> dict[str, Any]:
    """How an episode ended, as plain data: messages, the world's initial hash and its diff, and
    the score (or the exception that grading raised)."""
    ep = p.ep
    fp: dict[str, Any] = {"messages": [m.to_dict() for m in ep.messages[ep.prefix_len:]], "error": p.error}
    if ep.world is not None and ep.world_before is not None:
        fp["world_before"] = ep.world_before.hash()
        fp["world_diff"] = [c.to_dict() for c in ep.world_before.diff(ep.world)]
    if p.error is None:
        try:
            s = env.grade(ep)
            fp["score"] = (s.value, s.passed)
        except Exception as e:  # noqa: BLE001
            fp["score"] = f"grading raised {type(e).__name__}: {e}"
    return json.loads(json.dumps(fp, default=str))


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What differs first between two fingerprints: ``(summary, example)``."""
    ma, mb = a["messages"], b["messages"]
    if ma != mb:
        i = next((j for j, (x, y) in enumerate(zip(ma, mb, strict=False)) if x != y), min(len(ma), len(mb)))
        return (f"message {i + 1} differs", {"expected": ma[i] if i < len(ma) else None,
                                              "got": mb[i] if i < len(mb) else None})
    for key, what in (("error", "the error differs"), ("world_before", "the initial world differs"),
                      ("world_diff", "the world's changes differ"), ("score", "the score differs")):
        if a.get(key) != b.get(key):
            return what, {"expected": a.get(key), "got": b.get(key)}
    return "", {}
