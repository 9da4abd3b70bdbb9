"""Summaries of a run's records: outcome counts, pass rate with a Wilson interval, pass@k, and
the commonest causes of the errors."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..core.outcome import Outcome
from ..core.sanitize import clean_text, show_controls
from ..core.stats import at_k_table, wilson

#: distinct error causes a summary counts one by one; the rest are counted together
MAX_CAUSES = 32
OTHER_CAUSES = "(other causes)"


def error_cause(error: str | None) -> str | None:
    """An error record's cause in one line: the last line of its message (a traceback's last line
    names the exception), at most 200 characters, with text that cannot be encoded and control
    characters escaped and registered secrets redacted (it is stored in the summary and printed)."""
    if not error or not isinstance(error, str):
        return None
    lines = [ln for ln in error.strip().splitlines() if ln.strip()]
    cause = lines[-1].strip() if lines else error.strip()
    cause = show_controls(clean_text(cause[:4096])[0])
    return cause if len(cause) <= 200 else cause[:199] + "…"


#: what differs between errors of one cause: numbers (ports, ids, timings) and long hex ids
_VARIES = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b|\d+(?:\.\d+)?")


def cause_kind(cause: str) -> str:
    """``cause`` with its numbers and hex ids masked: errors that differ only in a port, a task's
    number or a timing (``timed out after 3.2s`` / ``after 3.4s``) are one cause in a summary."""
    return _VARIES.sub("#", cause)


def light_record(r: dict[str, Any]) -> dict[str, Any]:
    """The fields :meth:`Summary.add` and a progress bar need: what a worker process sends with
    each record, and what a resumed run keeps of the stored ones (not their messages)."""
    return {"task_id": r.get("task_id"), "outcome": r.get("outcome"), "score": r.get("score"),
            "passed": r.get("passed"), "usage": r.get("usage"),
            "error": error_cause(r.get("error")) if r.get("outcome") in Outcome.ERRORS else None}


class Summary:
    """A run's summary kept up to date record by record (``add``), so a run of any length ends
    without a second pass over its records; :meth:`result` gives the summary dict."""

    __slots__ = ("outcomes", "per_task", "n", "passes", "score_sum", "tokens", "causes", "examples")

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter({o.value: 0 for o in Outcome})
        self.per_task: dict[str, list[int]] = {}  # task id -> [scored, passed], every task seen
        self.n = self.passes = self.tokens = 0
        self.score_sum = 0.0
        self.causes: Counter[str] = Counter()  # error records by kind of cause (:func:`cause_kind`)
        self.examples: dict[str, tuple[str, bool]] = {}  # kind -> (its first cause, whether others differ)

    def add(self, r: dict[str, Any]) -> None:
        """Count one record (the fields of :func:`light_record`)."""
        outcome = r["outcome"]
        self.outcomes[outcome] += 1
        if outcome in Outcome.ERRORS:
            cause = error_cause(r.get("error")) or "(no message)"
            kind = cause_kind(cause)
            if kind not in self.causes and len(self.causes) >= MAX_CAUSES:
                kind = cause = OTHER_CAUSES
            first = self.examples.get(kind)
            if first is None:
                self.examples[kind] = (cause, False)
            elif not first[1] and first[0] != cause:
                self.examples[kind] = (first[0], True)
            self.causes[kind] += 1
        t = self.per_task.get(r["task_id"])
        if t is None:
            t = self.per_task[r["task_id"]] = [0, 0]
        usage = r.get("usage")
        if usage:
            self.tokens += int(usage.get("completion_tokens", 0))
        if outcome in Outcome.SCORED:
            self.n += 1
            self.score_sum += float(r["score"])
            ok = bool(r["passed"])
            self.passes += ok
            t[0] += 1
            t[1] += ok

    def result(self, *, samples: int) -> dict[str, Any]:
        n, passes, outcomes = self.n, self.passes, self.outcomes
        lo, hi = wilson(passes, n)
        counts = Counter((a, b) for a, b in self.per_task.values() if a)  # tasks per (scored, passed)
        return {
            "n_trajectories": sum(outcomes.values()),
            "n_scored": n,
            "n_errors": sum(outcomes[o] for o in Outcome.ERRORS),
            "outcomes": dict(outcomes),
            "n_tasks": len(self.per_task),
            "samples": samples,
            "passes": passes,
            "pass_rate": passes / n if n else None,
            "pass_rate_ci": [lo, hi] if n else None,
            "mean_score": self.score_sum / n if n else None,
            "pass_at_k": at_k_table(counts, samples),  # k = 1, 2, 4, ... and samples (summary_ks)
            "pass_hat_k": at_k_table(counts, samples, all_k=True),
            "completion_tokens": self.tokens,
            "error_causes": [[self._shown(c), k] for c, k in self.causes.most_common(5)],
        }


    def _shown(self, kind: str) -> str:
        cause, varies = self.examples.get(kind, (kind, False))
        return f"{cause} (and similar)" if varies else cause


def summarize(records: Iterable[dict[str, Any]], *, samples: int) -> dict[str, Any]:
    """Errors (policy/env/grader) are counted but excluded from pass rate and scores."""
    acc = Summary()
    for r in records:
        acc.add(r)
    return acc.result(samples=samples)
