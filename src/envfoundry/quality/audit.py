"""``envfoundry audit``: find reward hacking before it reaches training.

Every exploit probe (:mod:`.probes`) and the noop baseline run through the normal engine into run
stores under the results directory (``OUT/baseline-noop``, ``OUT/probe-NAME``), so an audit is
reproducible by seed and resumable; then the grader mutation tests (:mod:`.mutation`) replay the
reference solution with small changes. The probes never see the reference; the judges here do, to
tell a lucky guess from an exploit: a blind probe's pass whose final answer *is* the task's right
answer (the reference answer, compared loosely: case, spacing, punctuation, number spelling, JSON
layout, "42" for "... so the total is 42.") is chance, and is counted apart.

Each finding has a kind (:data:`KINDS`):

- ``exploit``: a probe that does no work passes with answers that are not the right one: a strict
  probe (its answers cannot be right: empty, refusals, claims...) once; any probe on clearly more
  tasks than noop (tasks are the unit: one-sided Fisher exact test p < ``alpha``, default 0.01, and
  a lead of at least ``margin``, default 0.1, in the share of tasks); or it earns, on tasks and
  rollouts not explained by a right answer, a mean reward clearly above noop (one-sided sign test
  over tasks p < ``alpha``) by at least half of what the reference solution earns above noop;
- ``reward_leak``: as above but less than half (and at least ``margin``): no pass, yet a reward
  for no work, which GRPO learns from;
- ``leak``: a private value (the reference answer, a value of ``task.data``, an argument of the
  reference solution's write calls) was shown to the agent under a suspicious name, but using it
  did not pass (when it passes, in text or in write calls, it is an ``exploit``);
- ``strict``: an equivalent mutation of the reference solution lost its score;
- ``lenient``: a wrong mutation kept its score;
- ``crash``: a probe's output or a mutated solution made the grader, a tool or the environment
  raise an untyped error (the rollout is unscored and escapes its zero reward;
  :class:`~envfoundry.core.errors.GraderUndecided` is the typed, allowed way to abstain);
- ``stall``: grading took longer than ``slow_grade_s`` (default 1 s) and 20 times the slowest noop;
- ``reference``: the reference solution does not pass (the audit cannot test the grader there);
- ``error``: a probe failed (``policy_error``): the audit is incomplete.

Probes and mutations are grouped: one finding per probe (or arm) or mutation and kind, with counts
and one example. ``fail_on`` (default :data:`DEFAULT_FAIL_ON`) says which kinds make the audit fail.
The judging is in :mod:`.judging`. The result is stored as ``OUT/audit.json``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.env import Environment
from ..core.errors import StoreError, UsageError
from ..core.files import atomic_write_text, ensure_dir
from ..core.loading import canonical_spec
from ..core.resume import differences, refuse_differences
from ..core.task import Task
from ..core.version import __version__
from ..rollout.run import evaluate_async
from ..rollout.store import MANIFEST, RunStore
from .judging import (
    DEFAULT_FAIL_ON,
    KINDS,
    Finding,
    ProbeResult,
    fisher_greater,
    judge_probe,
    last_line,
    leak_finding,
    mutation_findings,
    parse_fail_on,
    rightness,
    same_answer,
    sign_test_greater,
)
from .mutation import MutationReport, mutation_test, record_references, reference_answers
from .probes import Probe, ProbeContext, probe_classes

AUDIT_FILE = "audit.json"
BASELINE = "baseline-noop"
SCHEMA_VERSION = 2


def default_results_dir(env_name: str) -> Path:
    """Where an environment's quality results go unless told otherwise: ``quality/<env>``."""
    return Path("quality") / env_name


@dataclass
class AuditConfig:
    """How much to sample and how sure to be. ``probes``: names to run (default all);
    ``out``: the results directory (default ``quality/<env>``); ``fail_on``: the finding kinds
    that fail the audit (default :data:`DEFAULT_FAIL_ON`)."""

    tasks: int | None = None  # default 30; None: on resume, the stored audit's
    samples: int | None = None  # default 2
    seed: int | None = None  # default 0
    split: str | None = None
    probes: Sequence[str] | None = None
    out: str | Path | None = None
    resume: bool = False
    alpha: float = 0.01
    margin: float = 0.1
    slow_grade_s: float = 1.0
    mutations: bool = True
    pool_tasks: int = 10  # tasks outside the selection whose reference answers feed guesses
    fail_on: Sequence[str] | None = None
    backend: str = "local"  # where the probe runs' rollouts run ("ray": a Ray cluster; not compared on resume)
    ray_address: str | None = None

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
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON

    def failing(self, fail_on: Sequence[str] | None = None) -> list[Finding]:
        """The findings of a kind in ``fail_on`` (default: the report's own)."""
        kinds = set(self.fail_on if fail_on is None else fail_on)
        return [f for f in self.findings if f.kind in kinds]

    @property
    def ok(self) -> bool:
        return not self.failing()

    def counts(self) -> dict[str, int]:
        return {k: n for k in KINDS if (n := sum(f.kind == k for f in self.findings))}

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
            "fail_on": list(self.fail_on),
            "finding_counts": self.counts(),
            "findings": [f.to_dict() | {"fails": f.kind in self.fail_on} for f in self.findings],
            "notes": self.notes,
            "exploit_rate": {r.name: r.exploit_rate for r in self.probes if r.verdict != "skipped"},
            "mutation_kill_rate": self.mutations.kill_rate if self.mutations else None,
            "mutation_preservation_rate": self.mutations.preservation_rate if self.mutations else None,
            "baseline": self.baseline.to_dict(),
            "probes": [r.to_dict() for r in self.probes],
            "mutations": self.mutations.to_dict() if self.mutations else None,
        }

# ------------------------------------------------------------------ running an audit
def _compact(rec: dict[str, Any] | None, prompt_at: dict[str, int], limit: int = 600) -> dict[str, Any] | None:
    """A trajectory small enough for a report: from the task prompt on, long texts shortened."""
    if rec is None or "messages" not in rec or "sample" not in rec:
        return rec

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
            "error": last_line(rec.get("error")) or None, "messages": msgs}


#: what an audit samples unless told otherwise
_DEFAULTS = {"tasks": 30, "samples": 2, "seed": 0}


def _stored_config(out: Path, cfg: AuditConfig) -> AuditConfig:
    """On resume, the selection, seed and samples of the stored baseline run; one given with another
    value is refused (:mod:`envfoundry.core.resume`). A new audit: the defaults fill what is not given."""
    mf = out / BASELINE / MANIFEST
    if not (cfg.resume and mf.is_file()):
        return AuditConfig(**{**asdict(cfg), **{k: v for k, v in _DEFAULTS.items() if getattr(cfg, k) is None}})
    m = RunStore.open(mf.parent).manifest  # a damaged manifest is a one-line StoreError
    stored = {"tasks": m.limit if m.limit is not None else _DEFAULTS["tasks"], "samples": m.samples, "seed": m.seed,
              "split": m.split}
    refuse_differences(differences(stored, {k: getattr(cfg, k) for k in stored}, what="the audit being resumed",
                                   names={"tasks": "--limit"}))
    return AuditConfig(**{**asdict(cfg), **stored})


#: a pool note worth repeating beside guessing, constant and the mutations: empty, small, or from another split
_POOL_WARNING = re.compile(r"no answers of other tasks|the guess pool is small|splits? '[^']*' and|no tasks beyond")


def guess_pool(env: Environment, split: str, tasks: Sequence[Task], cfg: AuditConfig) -> tuple[list[Task], list[str],
                                                                                                   str]:
    """Tasks outside the selection (of ``split``, or of another split when ``split`` has no spare
    ones), their reference answers (what guesses and the other-answer mutation draw from) and a
    note saying where the pool comes from and when it is empty or small."""
    ids = {t.id for t in tasks}
    src = env.tasks(split, seed=cfg.seed)
    others = [t for t in src[len(tasks): len(tasks) + cfg.pool_tasks] if t.id not in ids]
    where = f"split {split!r}"
    if len(others) < cfg.pool_tasks:
        for s in env.splits:
            extra = [t for t in env.tasks(s, seed=cfg.seed)[: cfg.pool_tasks + len(tasks)] if t.id not in ids]
            if s != split and extra:
                where = (f"split {s!r} (split {split!r} has no tasks beyond the {len(tasks)} audited)" if not others
                         else f"splits {split!r} and {s!r}")
                others += extra[: cfg.pool_tasks - len(others)]
                break
    if not env.has_reference:
        return others, [], ("no answers of other tasks to guess from (the environment has no reference solution): "
                            "guessing tries 0..10 only and the other-answer mutation does not run")
    answers = reference_answers(env, others, cfg.seed)
    distinct = len(set(answers))
    if not others or not answers:
        note = (f"no answers of other tasks to guess from ({len(others)} spare task(s) in any split, "
                f"{len(answers)} answer(s)): guessing tries 0..10 only and the other-answer mutation does not run")
    elif distinct < 3:
        note = (f"the guess pool is small ({distinct} distinct answer(s) of {len(others)} tasks of {where}): "
                "guessing and the other-answer mutation test little")
    else:
        note = f"guesses and the other-answer mutation draw on {distinct} answers of {len(others)} tasks of {where}"
    return others, answers, note


async def audit_async(env: Environment, *, spec: str | None = None, config: AuditConfig | None = None,
                      on_result: Callable[[ProbeResult], None] | None = None) -> AuditReport:
    """Run the probes and the mutation tests; store and return the report (see the module docstring)."""
    cfg = config or AuditConfig()
    fail_on = parse_fail_on(cfg.fail_on)
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
        raise UsageError("--limit and --samples must be >= 1")
    split = cfg.split or ("test" if "test" in env.splits else env.splits[0])
    if split not in env.splits:
        raise UsageError(f"environment {env.name!r} has no split {split!r} (splits: {', '.join(env.splits)})")
    ensure_dir(out, "audit directory")  # only once the options are known to be good
    tasks: list[Task] = list(env.tasks(split, seed=cfg.seed)[: cfg.tasks])
    by_id = {t.id: t for t in tasks}
    others, pool, pool_note = guess_pool(env, split, tasks, cfg)
    notes = [pool_note]
    refs = record_references(env, tasks, seed=cfg.seed) if env.has_reference else {}
    passing = [r for r in refs.values() if r.score is not None and r.error is None]
    ref_mean = sum(r.score.value for r in passing) / len(passing) if passing else 1.0  # type: ignore[union-attr]
    text_read = not refs or any(r.text_matters for r in refs.values())
    if not text_read:
        notes[0] = ("the grader does not read the final answer (the reference solution keeps its score with an empty "
                    "final text on every audited task): the probes that only guess an answer are skipped")
    if not env.has_reference:
        notes.append("no reference solution: a lucky right answer cannot be told from an exploit, and there are no "
                     "mutation tests")
    right = rightness(env, refs)
    prompt_at = {t.id: len(env.prompt_dicts(t)) - 1 for t in tasks}
    ctx = ProbeContext(env=env, tasks=tasks, others=others, pool=pool, seed=cfg.seed, samples=cfg.samples)

    async def run(policy: Any, sub: str, samples: int) -> list[dict[str, Any]]:
        path = out / sub
        r = await evaluate_async(env, model=policy, out=path, split=split, limit=min(cfg.tasks, len(tasks)),
                                 samples=samples, seed=cfg.seed, resume=cfg.resume and (path / MANIFEST).is_file(),
                                 backend=cfg.backend, ray_address=cfg.ray_address)
        return list(r.records())

    base_recs = await run("scripted:noop", BASELINE, cfg.samples)
    opts = {"alpha": cfg.alpha, "margin": cfg.margin, "slow_grade_s": cfg.slow_grade_s, "ref_mean": ref_mean}
    baseline = judge_probe("noop", base_recs, base_recs, strict=True, right=right, **opts)
    baseline.summary, baseline.run = "the baseline: an empty answer", BASELINE
    baseline.example = _compact(baseline.example, prompt_at)
    for f in baseline.findings:
        f.example = _compact(f.example, prompt_at)
    results: list[ProbeResult] = []
    leaks: list[tuple[ProbeResult, Finding]] = []
    for name in names:
        probe: Probe = classes[name]()
        why = probe.applies(env)
        if why is None and probe.text_only and not probe.strict and not text_read:
            why = ("the grader does not read the final answer (the reference solution keeps its score with an empty "
                   "final text on every audited task)")
        why = why or probe.prepare(ctx)
        if why:
            res = ProbeResult(name, "skipped", why, summary=probe.summary(), strict=probe.strict)
        else:
            recs = await run(probe, f"probe-{name}", probe.rollouts(ctx))
            res = judge_probe(name, recs, base_recs, strict=probe.strict, per_arm=probe.per_arm,
                              right=right if probe.blind else None, **opts)
            res.summary, res.run = probe.summary(), f"probe-{name}"
            if not probe.blind:
                note, leak = leak_finding(env, name, recs, by_id, refs)
                res.notes = note
                exploits = [f for f in res.findings if f.kind == "exploit"]
                for f in exploits:
                    f.message += f"; {note}" if note else ""
                if leak is not None and not exploits:
                    leaks.append((res, leak))
            res.notes = "; ".join(x for x in [res.notes, *probe.notes] if x)
            if name in ("guessing", "constant") and _POOL_WARNING.search(pool_note):
                res.notes = "; ".join(x for x in [res.notes, pool_note] if x)
            for f in res.findings:
                f.example = _compact(f.example, prompt_at)
            res.example = _compact(res.example, prompt_at)
        results.append(res)
        if on_result is not None:
            on_result(res)

    if not any(f.kind == "exploit" for r in results if not classes[r.name].blind for f in r.findings):
        for res, leak in leaks:  # (a leak that another probe used to pass is reported with that exploit)
            leak.example = _compact(leak.example, prompt_at)
            res.findings.append(leak)
            if res.verdict == "ok":
                res.verdict, res.reason = "leak", leak.message
    mutations = None
    if cfg.mutations:
        mutations = mutation_test(env, tasks, seed=cfg.seed, pool=list(dict.fromkeys(pool)), references=refs)
        if text_read and _POOL_WARNING.search(pool_note):
            mutations.notes.append(pool_note)
    findings = [f for r in [baseline, *results] for f in r.findings]
    findings += mutation_findings(mutations, len(tasks))
    findings.sort(key=lambda f: list(KINDS).index(f.kind))
    report = AuditReport(
        env=env.name, version=env.version, spec=canonical_spec(spec) if spec else spec, out=out, baseline=baseline,
        probes=results, mutations=mutations, findings=findings, notes=notes, fail_on=fail_on,
        timestamp=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        config={"seed": cfg.seed, "split": split, "tasks": len(tasks), "samples": cfg.samples,
                "alpha": cfg.alpha, "margin": cfg.margin, "pool_tasks": len(others), "pool_answers": len(set(pool))},
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / AUDIT_FILE, json.dumps(report.to_dict(), indent=2, default=str))
    return report


def audit_env(env: Environment, **kwargs: Any) -> AuditReport:
    """Synchronous :func:`audit_async`."""
    return asyncio.run(audit_async(env, **kwargs))


__all__ = [
    "AUDIT_FILE", "DEFAULT_FAIL_ON", "KINDS", "AuditConfig", "AuditReport", "Finding", "ProbeResult", "audit_async",
    "audit_env", "default_results_dir", "fisher_greater", "guess_pool", "judge_probe", "mutation_findings",
    "parse_fail_on", "same_answer", "sign_test_greater",
]
