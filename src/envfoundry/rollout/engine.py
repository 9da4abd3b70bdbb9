"""The asyncio rollout engine: tasks x samples, bounded concurrency, typed outcomes.

Each rollout gets a seed hashed from (run seed, task id, sample) and a fork of the task's initial
world, so a GRPO group of K samples starts from the same state and results do not depend on the
order in which rollouts finish. Exceptions are classified by where they happened: in the policy
(``policy_error``), in environment code (``env_error``) or in a grader (``grader_error``); none is
ever turned into a score.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.env import Environment, Episode, format_exception
from ..core.errors import ModelServerDied, PolicyError
from ..core.outcome import Outcome, Usage
from ..core.policy import Policy
from ..core.seeding import derive_seed
from ..core.task import Task

OnRecord = Callable[[dict[str, Any]], None]

_NO_LIMIT = contextlib.nullcontext()


@dataclass(slots=True, frozen=True)
class RolloutConfig:
    """How to run rollouts. ``timeout_s`` bounds one whole rollout (None: no bound)."""

    samples: int = 1
    concurrency: int = 32
    seed: int = 0
    timeout_s: float | None = None
    max_turns: int | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout_s is not None and not self.timeout_s > 0:  # NaN too
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout_s}")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")


async def run_rollout(
    env: Environment, task: Task, sample: int, policy: Policy, cfg: RolloutConfig
) -> dict[str, Any]:
    """Run one episode to its end and grade it; always returns a record, never raises
    (except cancellation)."""
    seed = derive_seed(cfg.seed, task.id, sample)
    max_turns = cfg.max_turns or env.max_turns
    usage = Usage()
    turn_usage: list[dict[str, int]] = []  # the server's token counts, one entry per policy turn
    where = "env"  # which side is running: decides policy_error vs env_error
    t_policy = t_env = t_grade = 0.0
    t0 = t = time.perf_counter()
    ep: Episode | None = None
    outcome: Outcome | None = None
    error: str | None = None
    score = None
    info: list[dict[str, Any]] = []
    asynchronous = env.asynchronous
    try:
        # no limit: a shared null context (an ``asyncio.timeout(None)`` costs ~2 us a rollout, a
        # measurable share of the engine's overhead against an instant server)
        async with _NO_LIMIT if cfg.timeout_s is None else asyncio.timeout(cfg.timeout_s):
            ep = await env.areset(task, seed=seed) if asynchronous else env.reset(task, seed=seed)
            while True:
                t1 = time.perf_counter()
                t_env += t1 - t
                where = "policy"
                out = await policy.act(ep)
                t = time.perf_counter()
                t_policy += t - t1
                where = "env"
                usage.add(out.usage)
                turn_usage.append(out.usage.to_dict())
                if out.info:
                    info.append(out.info)
                res = await ep.astep(out.action) if asynchronous else ep.step(out.action)
                if res.terminated or res.truncated:
                    break
                if ep.turns >= max_turns:
                    ep.truncated = True
                    break
            t_env += time.perf_counter() - t
    except TimeoutError:
        outcome = Outcome.POLICY_ERROR if where == "policy" else Outcome.ENV_ERROR
        error = f"rollout timed out after {cfg.timeout_s}s while waiting for the {where}"
    except PolicyError as e:
        outcome, error = Outcome.POLICY_ERROR, f"{e}"
    except (asyncio.CancelledError, ModelServerDied):  # the run stops: nothing is recorded against a dead server
        if asynchronous and ep is not None:
            await _close(ep)
        raise
    except Exception as e:  # noqa: BLE001 - classified, recorded with its traceback
        outcome = Outcome.POLICY_ERROR if where == "policy" else Outcome.ENV_ERROR
        error = format_exception(e)

    if outcome is None and ep is not None:
        t = time.perf_counter()
        try:
            score = await env.agrade(ep) if asynchronous else env.grade(ep)
            outcome = Outcome.TRUNCATED if ep.truncated else Outcome.COMPLETED
        except Exception as e:  # noqa: BLE001
            # a served environment that went away while grading: the environment's failure, not its grader's
            lost = asynchronous and isinstance(e, ConnectionError)
            outcome, error = Outcome.ENV_ERROR if lost else Outcome.GRADER_ERROR, format_exception(e)
        t_grade = time.perf_counter() - t

    assert outcome is not None
    rec: dict[str, Any] = {
        "task_id": task.id,
        "sample": sample,
        "seed": seed,
        "outcome": _OUTCOME_STR[outcome],
        "score": score.value if score is not None else None,
        "passed": score.passed if score is not None else None,
        "breakdown": score.breakdown if score is not None else None,
        "explanation": score.explanation if score is not None else None,
        "error": error,
        "turns": ep.turns if ep is not None else 0,
        "messages": _message_dicts(ep),
        "usage": usage.to_dict(),
        "timings": {
            "total_s": time.perf_counter() - t0,
            "policy_s": t_policy,
            "env_s": t_env,
            "grade_s": t_grade,
        },
        "split": task.split,
        "metadata": task.metadata,
    }
    if asynchronous and ep is not None:
        diff = ep.world_diff_dicts()
        await _close(ep)
        if diff is not None:
            rec["world_diff"] = diff
    elif ep is not None and ep.world is not None and ep.world_before is not None:
        rec["world_diff"] = [c.to_dict() for c in ep.world_before.diff(ep.world)]
    if info:
        rec["policy_info"] = info
    if usage.prompt_tokens or usage.completion_tokens:  # a model's counts (scripted policies have none)
        rec["turn_usage"] = turn_usage
    return rec


_OUTCOME_STR = {o: o.value for o in Outcome}


async def _close(ep: Episode) -> None:
    """Free an asynchronous episode's resources; a failure to free them never changes the record."""
    with contextlib.suppress(Exception):
        await ep.aclose()


def _message_dicts(ep: Episode | None) -> list[dict[str, Any]]:
    if ep is None:
        return []
    n = ep.prefix_len
    return [*ep.env.prompt_dicts(ep.task), *(m.to_dict() for m in ep.messages[n:])]


def iter_jobs(
    tasks: Sequence[Task], samples: int, done: set[tuple[str, int]] | None = None, *, offset: int = 0
) -> Iterator[tuple[Task, int]]:
    """(task, sample) pairs not yet ``done``; sample indices run ``offset .. offset + samples - 1``."""
    for t in tasks:
        for s in range(offset, offset + samples):
            if done is None or (t.id, s) not in done:
                yield t, s


async def run_all(
    env: Environment,
    jobs: Iterator[tuple[Task, int]],
    policy: Policy,
    cfg: RolloutConfig,
    on_record: OnRecord,
    n_jobs: int | None = None,
) -> None:
    """Run every job with ``cfg.concurrency`` workers (no more than ``n_jobs``, the number of
    jobs where known); ``on_record`` receives each record as it finishes (the store appends it there)."""

    async def worker() -> None:
        n = 0
        for task, sample in jobs:  # a shared iterator: each job goes to exactly one worker
            on_record(await run_rollout(env, task, sample, policy, cfg))
            n += 1
            if n % 8 == 0:
                # scripted policies never suspend; yield so Ctrl-C and other workers get a turn
                await asyncio.sleep(0)

    n = cfg.concurrency if n_jobs is None else max(1, min(cfg.concurrency, n_jobs))
    workers = [asyncio.ensure_future(worker()) for _ in range(n)]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
