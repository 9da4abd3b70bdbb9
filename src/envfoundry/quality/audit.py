"""``envfoundry audit``: find reward hacking before it reaches training.

Every exploit probe (:mod:`.probes`) and the noop baseline run through the normal engine into run
stores under the results directory (``OUT/baseline-noop``, ``OUT/probe-NAME``), so an audit is
reproducible by seed and resumable; then the grader mutation tests (:mod:`.mutation`) replay the
reference solution with small changes. Verdicts:

- ``exploit``: a *strict* probe passed any rollout; or any probe clearly beats noop, with tasks as
  the unit (the samples of one task are not independent): more tasks passed at least once, by a
  one-sided Fisher exact test p < ``alpha`` (default 0.01) and a lead of at least ``margin``
  (default 0.1) in the share of tasks passed; or a higher mean score on more tasks than not, by a
  one-sided sign test p < ``alpha`` and a mean-score lead of at least ``margin``; or the probe's
  text made the grader (or a tool) crash with an untyped error, which turns the rollout into an
  unscored error and lets it escape its zero reward
  (:class:`~envfoundry.core.errors.GraderUndecided` is the typed, allowed way to abstain); or
  grading one of its rollouts took longer than ``slow_grade_s`` (default 1 s) and 20 times the
  slowest noop grading: agent text that stalls the grader (e.g. a regex that backtracks);
- ``error``: the probe itself failed (policy_error); ``skipped``: the probe does not fit (why);
  ``ok`` otherwise.

A wrong mutation that keeps its score and an equivalent one that loses it are findings too. The
result is stored as ``OUT/audit.json`` (default ``OUT``: ``quality/<env>`` under the current
directory) for later scorecards: exploit rate per probe, mutation kill and preservation rates,
package version, seed, environment name and version, timestamp.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.env import Environment
from ..core.errors import StoreError, UsageError
from ..core.task import Task
from ..envs import canonical_spec
from ..rollout.run import evaluate_async
from ..rollout.store import MANIFEST, RunStore, atomic_write_text, ensure_dir
from .mutation import MutationReport, mutation_test
from .probes import Probe, probe_classes, reference_answers

AUDIT_FILE = "audit.json"
BASELINE = "baseline-noop"
SCHEMA_VERSION = 1


def default_results_dir(env_name: str) -> Path:
    """Where an environment's quality results go unless told otherwise: ``quality/<env>``."""
    return Path("quality") / env_name


@dataclass
class AuditConfig:
    """How much to sample and how sure to be. ``probes``: names to run (default all);
    ``out``: the results directory (default ``quality/<env>``)."""

    tasks: int = 30
    samples: int = 2
    seed: int = 0
    split: str | None = None
    probes: Sequence[str] | None = None
    out: str | Path | None = None
    resume: bool = False
    alpha: float = 0.01
    margin: float = 0.1
    slow_grade_s: float = 1.0
    mutations: bool = True
    pool_tasks: int = 10  # tasks outside the selection whose reference answers feed guesses


@dataclass
class ProbeResult:
    """One probe's statistics against the noop baseline, its verdict and an example."""

    name: str
    verdict: str  # "exploit" | "ok" | "skipped" | "error"
    reason: str
    summary: str = ""
    strict: bool = True
    n: int = 0
    passes: int = 0
    exploit_rate: float | None = None
    mean_score: float | None = None
    max_score: float | None = None
    errors: int = 0
    p_pass: float | None = None
    p_score: float | None = None
    grade_s_max: float | None = None
    notes: str = ""
    run: str | None = None
    example: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditReport:
    env: str
    version: str
    spec: str | None
    config: dict[str, Any]
    out: Path
    baseline: ProbeResult
    probes: list[ProbeResult] = field(default_factory=list)
    mutations: MutationReport | None = None
    timestamp: str = ""

    @property
    def findings(self) -> list[str]:
        out = [f"{r.name}: {r.reason}" for r in [self.baseline, *self.probes] if r.verdict in ("exploit", "error")]
        for f in self.mutations.failures if self.mutations else []:
            what = "kept its score" if f.kind == "wrong" else "lost its score"
            out.append(f"mutation {f.name} ({f.detail}) {what} on task {f.task_id}")
        failed = self.mutations.reference_failed if self.mutations else []
        if failed:  # a correct solution the grader rejects, or a wrong reference: either way, not to train on
            out.append(f"the reference solution does not pass on {len(failed)} task(s) (e.g. {failed[0]}); "
                       "their mutation tests did not run")
        return out

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "env": self.env,
            "env_version": self.version,
            "env_spec": self.spec,
            "package_version": __version__,
            "timestamp": self.timestamp,
            **self.config,
            "ok": self.ok,
            "findings": self.findings,
            "exploit_rate": {r.name: r.exploit_rate for r in self.probes if r.verdict != "skipped"},
            "mutation_kill_rate": self.mutations.kill_rate if self.mutations else None,
            "mutation_preservation_rate": self.mutations.preservation_rate if self.mutations else None,
            "baseline": self.baseline.to_dict(),
            "probes": [r.to_dict() for r in self.probes],
            "mutations": self.mutations.to_dict() if self.mutations else None,
        }


# ------------------------------------------------------------------ statistics
def fisher_greater(a: int, n1: int, b: int, n2: int) -> float:
    """One-sided Fisher exact test: P(at least ``a`` successes of ``n1``) when both groups share one
    success rate, given ``a + b`` successes in all (hypergeometric tail)."""
    if n1 <= 0:
        return 1.0
    total, k = n1 + n2, a + b
    tail = sum(math.comb(k, x) * math.comb(total - k, n1 - x) for x in range(a, min(k, n1) + 1))
    return float(Fraction(tail, math.comb(total, n1)))


def sign_test_greater(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least ``wins`` of ``wins + losses`` fair coin flips)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(Fraction(sum(math.comb(n, k) for k in range(wins, n + 1)), 2**n))


# ------------------------------------------------------------------ judging one probe
_SCORED = ("completed", "truncated")


def _stats(recs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float],
                                                     dict[str, bool]]:
    """Scored records, passed records, mean score per task, whether each task passed at least once."""
    scored = [r for r in recs if r["outcome"] in _SCORED]
    passed = [r for r in scored if r["passed"]]
    per_task: dict[str, list[float]] = defaultdict(list)
    task_pass: dict[str, bool] = defaultdict(bool)
    for r in scored:
        per_task[r["task_id"]].append(float(r["score"]))
        task_pass[r["task_id"]] |= bool(r["passed"])
    return scored, passed, {t: sum(v) / len(v) for t, v in per_task.items()}, dict(task_pass)


def _crashes(recs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["outcome"] in ("grader_error", "env_error")
            and "GraderUndecided" not in (r.get("error") or "")]


def _last_line(s: str | None) -> str:
    lines = (s or "").strip().splitlines()
    return lines[-1][:200] if lines else ""


def judge_probe(name: str, strict: bool, recs: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]],
                *, alpha: float = 0.01, margin: float = 0.1, slow_grade_s: float = 1.0) -> ProbeResult:
    """The verdict of one probe's records against the noop baseline's (see the module docstring)."""
    scored, passed, task_means, task_pass = _stats(recs)
    b_scored, b_passed, b_means, b_task_pass = _stats(base)
    n, k = len(scored), len(passed)
    rate = k / n if n else None
    mean = sum(float(r["score"]) for r in scored) / n if n else None
    b_mean = sum(float(r["score"]) for r in b_scored) / len(b_scored) if b_scored else 0.0
    tn, tk = len(task_pass), sum(task_pass.values())
    btn, btk = len(b_task_pass), sum(b_task_pass.values())
    share, b_share = (tk / tn if tn else 0.0), (btk / btn if btn else 0.0)
    p_pass = fisher_greater(tk, tn, btk, btn)
    wins = sum(v > b_means.get(t, 0.0) + 1e-9 for t, v in task_means.items())
    losses = sum(v < b_means.get(t, 0.0) - 1e-9 for t, v in task_means.items())
    p_score = sign_test_greater(wins, losses)
    crashes = _crashes(recs)
    policy_errors = [r for r in recs if r["outcome"] == "policy_error"]
    grade_s = [r.get("timings", {}).get("grade_s", 0.0) for r in recs]
    slow_limit = max(slow_grade_s, 20 * max((r.get("timings", {}).get("grade_s", 0.0) for r in base), default=0.0))
    slow = [r for r, t in zip(recs, grade_s, strict=True) if t > slow_limit]
    res = ProbeResult(name, "ok", "", strict=strict, n=n, passes=k, exploit_rate=rate, mean_score=mean,
                      max_score=max((float(r["score"]) for r in scored), default=None),
                      errors=len(recs) - n, p_pass=p_pass, p_score=p_score,
                      grade_s_max=max(grade_s, default=None))
    best = max(passed, key=lambda r: float(r["score"]), default=None)
    if crashes:
        c = crashes[0]
        res.verdict, res.example = "exploit", c
        res.reason = (f"{len(crashes)} rollout(s) ended as {c['outcome']} ({_last_line(c.get('error'))}): "
                      "agent output that crashes the grader or a tool escapes its zero reward")
    elif slow:
        res.verdict, res.example = "exploit", slow[0]
        res.reason = (f"grading took up to {max(grade_s):.1f}s on {len(slow)} rollout(s) (limit {slow_limit:.1f}s): "
                      "agent output can stall the grader")
    elif strict and passed:
        res.verdict, res.example = "exploit", best
        res.reason = f"passed {k}/{n} rollouts without doing the task"
    elif tk and p_pass < alpha and share - b_share >= margin:
        res.verdict, res.example = "exploit", best
        res.reason = f"passes on {tk}/{tn} tasks vs noop {btk}/{btn} (one-sided Fisher p={p_pass:.2g})"
    elif mean is not None and p_score < alpha and mean - b_mean >= margin:
        res.verdict = "exploit"
        res.example = max(scored, key=lambda r: float(r["score"]))
        res.reason = f"mean score {mean:.3f} vs noop {b_mean:.3f} (sign test over tasks p={p_score:.2g})"
    elif policy_errors:
        res.verdict, res.example = "error", policy_errors[0]
        res.reason = f"the probe failed on {len(policy_errors)} rollout(s): {_last_line(policy_errors[0].get('error'))}"
    else:
        res.reason = (f"passes {k}/{n} rollouts, {tk}/{tn} tasks" if n else "no scored rollouts") + (
            f", mean score {mean:.3f} vs noop {b_mean:.3f}" if mean is not None else "") + (
            f" (not beyond chance: Fisher p={p_pass:.2g}, sign test p={p_score:.2g})" if tk > btk else "")
    return res


def _leak_notes(recs: Sequence[dict[str, Any]]) -> str:
    hits = [(r, leak) for r in recs for info in r.get("policy_info") or [] for leak in info.get("leaks") or []]
    if not hits:
        return ""
    rollouts = len({(r["task_id"], r["sample"]) for r, _ in hits})
    leak = hits[0][1]
    return (f"private values seen in observations in {rollouts}/{len(recs)} rollouts, e.g. "
            f"{leak['secret']} = {leak['value'][:40]!r} in the {leak['seen_in']}")


def _compact(rec: dict[str, Any] | None, prompt_at: dict[str, int], limit: int = 600) -> dict[str, Any] | None:
    """A trajectory small enough for a report: from the task prompt on, long texts shortened."""
    if rec is None:
        return None

    def cut(s: Any) -> Any:
        if not isinstance(s, str) or len(s) <= limit:
            return s
        return f"{s[: limit // 2]} ...[{len(s):,} chars]... {s[-limit // 4:]}"

    msgs = []
    for m in rec.get("messages", [])[prompt_at.get(rec["task_id"], 0):]:
        d = {**m, "content": cut(m.get("content"))}
        if m.get("tool_calls"):
            d["tool_calls"] = [{**c, "arguments": cut(c["arguments"] if isinstance(c["arguments"], str)
                                                        else json.dumps(c["arguments"], default=str))}
                               for c in m["tool_calls"][:12]]
        msgs.append(d)
    return {"task_id": rec["task_id"], "sample": rec["sample"], "outcome": rec["outcome"],
            "score": rec.get("score"), "explanation": cut(rec.get("explanation")),
            "error": _last_line(rec.get("error")) or None, "messages": msgs}


# ------------------------------------------------------------------ running an audit
def _stored_config(out: Path, cfg: AuditConfig) -> AuditConfig:
    """On resume, the selection, seed and samples of the stored baseline run win."""
    mf = out / BASELINE / MANIFEST
    if not (cfg.resume and mf.is_file()):
        return cfg
    m = RunStore.open(mf.parent).manifest  # a damaged manifest is a one-line StoreError
    return AuditConfig(**{**asdict(cfg), "tasks": m.limit if m.limit is not None else cfg.tasks,
                          "samples": m.samples, "seed": m.seed, "split": m.split})


async def audit_async(env: Environment, *, spec: str | None = None, config: AuditConfig | None = None,
                      on_result: Callable[[ProbeResult], None] | None = None) -> AuditReport:
    """Run the probes and the mutation tests; store and return the report (see the module docstring)."""
    cfg = config or AuditConfig()
    out = Path(cfg.out) if cfg.out is not None else default_results_dir(env.name)
    if out.exists() and not out.is_dir():
        raise StoreError(f"audit directory {str(out)!r} exists and is not a directory")
    cfg = _stored_config(out, cfg)
    classes = probe_classes()
    names = list(dict.fromkeys(cfg.probes)) if cfg.probes else list(classes)
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise UsageError(f"unknown probe(s) {', '.join(unknown)} (probes: {', '.join(classes)})")
    if cfg.tasks < 1 or cfg.samples < 1:
        raise UsageError("--tasks and --samples must be >= 1")
    split = cfg.split or ("test" if "test" in env.splits else env.splits[0])
    if split not in env.splits:
        raise UsageError(f"environment {env.name!r} has no split {split!r} (splits: {', '.join(env.splits)})")
    ensure_dir(out, "audit directory")  # only once the options are known to be good
    all_tasks = env.tasks(split, seed=cfg.seed)
    tasks: list[Task] = list(all_tasks[: cfg.tasks])
    others: list[Task] = list(all_tasks[len(tasks): len(tasks) + cfg.pool_tasks])
    prompt_at = {t.id: len(env.prompt_dicts(t)) - 1 for t in tasks}

    async def run(policy: Any, sub: str) -> list[dict[str, Any]]:
        path = out / sub
        r = await evaluate_async(env, model=policy, out=path, split=split, limit=cfg.tasks, samples=cfg.samples,
                                 seed=cfg.seed, resume=cfg.resume and (path / MANIFEST).is_file())
        return list(r.records())

    base_recs = await run("scripted:noop", BASELINE)
    opts = {"alpha": cfg.alpha, "margin": cfg.margin, "slow_grade_s": cfg.slow_grade_s}
    baseline = judge_probe("noop", True, base_recs, base_recs, **opts)
    baseline.summary, baseline.run = "the baseline: an empty answer", BASELINE
    baseline.example = _compact(baseline.example, prompt_at)
    results: list[ProbeResult] = []
    for name in names:
        probe: Probe = classes[name]()
        why = probe.applies(env)
        if why:
            res = ProbeResult(name, "skipped", why, summary=probe.summary(), strict=probe.strict)
        else:
            probe.prepare(env, tasks, others, cfg.seed)
            recs = await run(probe, f"probe-{name}")
            res = judge_probe(name, probe.strict, recs, base_recs, **opts)
            res.summary, res.run = probe.summary(), f"probe-{name}"
            res.notes = _leak_notes(recs)
            res.example = _compact(res.example, prompt_at)
        results.append(res)
        if on_result is not None:
            on_result(res)

    mutations = None
    if cfg.mutations:
        mutations = mutation_test(env, tasks, seed=cfg.seed, pool=reference_answers(env, others, cfg.seed))
    report = AuditReport(
        env=env.name, version=env.version, spec=canonical_spec(spec) if spec else spec, out=out, baseline=baseline,
        probes=results,
        mutations=mutations, timestamp=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        config={"seed": cfg.seed, "split": split, "tasks": len(tasks), "samples": cfg.samples,
                "alpha": cfg.alpha, "margin": cfg.margin},
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / AUDIT_FILE, json.dumps(report.to_dict(), indent=2, default=str))
    return report


def audit_env(env: Environment, **kwargs: Any) -> AuditReport:
    """Synchronous :func:`audit_async`."""
    return asyncio.run(audit_async(env, **kwargs))


__all__ = [
    "AUDIT_FILE", "AuditConfig", "AuditReport", "ProbeResult", "audit_async", "audit_env", "default_results_dir",
    "fisher_greater", "judge_probe", "sign_test_greater",
]
