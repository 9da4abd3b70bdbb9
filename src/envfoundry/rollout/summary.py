"""Summaries of a run's records: outcome counts, pass rate with a Wilson interval, pass@k."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from ..core.outcome import Outcome
from ..core.stats import mean_over_tasks, wilson


def summarize(records: Iterable[dict[str, Any]], *, samples: int) -> dict[str, Any]:
    """Errors (policy/env/grader) are counted but excluded from pass rate and scores."""
    outcomes: Counter[str] = Counter({o.value: 0 for o in Outcome})
    per_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    n = passes = 0
    score_sum = 0.0
    tokens = 0
    task_ids: set[str] = set()
    for r in records:
        outcomes[r["outcome"]] += 1
        task_ids.add(r["task_id"])
        usage = r.get("usage") or {}
        tokens += int(usage.get("completion_tokens", 0))
        if r["outcome"] in (Outcome.COMPLETED, Outcome.TRUNCATED):
            n += 1
            score_sum += float(r["score"])
            ok = bool(r["passed"])
            passes += ok
            t = per_task[r["task_id"]]
            t[0] += 1
            t[1] += ok
    lo, hi = wilson(passes, n)
    counts = [(a, b) for a, b in per_task.values()]
    return {
        "n_trajectories": sum(outcomes.values()),
        "n_scored": n,
        "n_errors": sum(outcomes[o.value] for o in Outcome if o.is_error),
        "outcomes": dict(outcomes),
        "n_tasks": len(task_ids),
        "samples": samples,
        "passes": passes,
        "pass_rate": passes / n if n else None,
        "pass_rate_ci": [lo, hi] if n else None,
        "mean_score": score_sum / n if n else None,
        "pass_at_k": {str(k): mean_over_tasks(counts, k) for k in range(1, samples + 1)},
        "pass_hat_k": {str(k): mean_over_tasks(counts, k, all_k=True) for k in range(1, samples + 1)},
        "completion_tokens": tokens,
    }
