"""How ``envfoundry audit`` judges what it saw: finding kinds, lucky guesses and verdicts.

A blind probe's pass whose final answer *is* the task's right answer (the reference answer,
compared loosely by :func:`same_answer`) is chance, counted apart (``right``); the rest is judged
against the noop baseline with tasks as the unit (:func:`judge_probe`). The probes never see the
reference; these judges do (:func:`rightness`, :func:`leak_finding`). Mutation outcomes become
grouped findings in :func:`mutation_findings`. The kinds are in :data:`KINDS`, documented in
:mod:`envfoundry.quality.audit`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from ..core.env import Environment
from ..core.errors import UsageError
from ..core.outcome import Outcome
from ..core.task import Task
from .mutation import MutationReport, Reference
from .probes import extract_answer, flat_values

#: finding kind -> what it means (in order of severity)
KINDS: dict[str, str] = {
    "crash": "agent output or a mutated solution crashes the grader, a tool or the environment",
    "stall": "agent output stalls the grader",
    "exploit": "a probe that does no work passes beyond chance, or earns at least half the reference's reward",
    "reference": "the reference solution does not pass: the grader is not tested there",
    "error": "a probe failed: the audit is incomplete",
    "reward_leak": "a probe that does no work earns reward clearly above noop, less than half the reference's",
    "leak": "a private value is shown to the agent, but using it does not pass",
    "lenient": "a wrong change of the reference solution keeps its score",
    "strict": "an equivalent change of the reference solution loses its score",
}
#: the kinds that fail an audit unless ``fail_on`` says otherwise
DEFAULT_FAIL_ON: tuple[str, ...] = ("crash", "stall", "exploit", "reference", "error")


def parse_fail_on(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"exploit,lenient"`` (or a sequence of kinds) -> the kinds, in the order of :data:`KINDS`;
    ``all``, ``none`` and ``default`` are allowed; an unknown kind is a :class:`UsageError`."""
    if text is None:
        return DEFAULT_FAIL_ON
    items = [x.strip().lower() for x in (text.split(",") if isinstance(text, str) else text) if x.strip()]
    if not items and isinstance(text, str):
        raise UsageError(f"--fail-on needs finding kinds ({', '.join(KINDS)}), 'all', 'default' or 'none'")
    out: list[str] = []
    for x in items:
        if x == "none":
            continue
        if x == "all":
            out += list(KINDS)
        elif x == "default":
            out += list(DEFAULT_FAIL_ON)
        elif x in KINDS:
            out.append(x)
        else:
            raise UsageError(f"--fail-on: unknown finding kind {x!r} (kinds: {', '.join(KINDS)}; "
                             "or all, default, none)")
    return tuple(k for k in KINDS if k in out)



@dataclass
class Finding:
    """One grouped finding: a probe (or one arm of it) or a mutation, its kind, how many tasks,
    and one example."""

    kind: str
    source: str  # "probe" | "mutation" | "reference"
    name: str
    message: str
    count: int = 0  # tasks affected
    total: int = 0  # tasks tried
    example: dict[str, Any] | None = None

    def line(self) -> str:
        what = f"mutation {self.name}" if self.source == "mutation" else self.name
        return f"{self.kind}: {what}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProbeResult:
    """One probe's statistics against the noop baseline, its verdict, findings and an example.

    ``passes``: all passes; ``right``: passes whose final answer is the task's right answer (lucky
    guesses of a blind probe); ``exploit_rate``: the share of rollouts passed with another answer
    (for a probe judged per arm: of its worst arm, named in ``arm``)."""

    name: str
    verdict: str  # a finding kind, "ok", "skipped"
    reason: str
    summary: str = ""
    strict: bool = True
    n: int = 0
    passes: int = 0
    right: int = 0
    exploit_rate: float | None = None
    mean_score: float | None = None
    max_score: float | None = None
    errors: int = 0
    p_pass: float | None = None
    p_score: float | None = None
    grade_s_max: float | None = None
    arm: str | None = None
    notes: str = ""
    run: str | None = None
    example: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


# ------------------------------------------------------------------ is an answer the right one?
_EDGE = " \t\n.,;:!?\"'`*_()"
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", s).casefold()).strip(_EDGE)


def _as_number(s: str) -> float | None:
    return float(s.replace(",", "")) if _NUMBER.fullmatch(s) else None


def same_answer(answer: str, reference: str) -> bool:
    """Whether ``answer`` says what ``reference`` says: equal up to case, spacing, surrounding
    punctuation, number spelling (``1,234`` = ``1234.0``) and JSON layout; or a short answer that
    is how the reference ends (``42`` for ``so the total is 42.``, ``B`` for ``The answer is B``)."""
    a, b = answer.strip(), reference.strip()
    if not a or not b or len(a) > 2 * len(b) + 200:  # a far longer text is not the same answer (and may be hostile)
        return False
    if a[0] in "[{" or b[0] in "[{":
        try:
            ja, jb = json.loads(a), json.loads(b)
            if isinstance(ja, (list, dict)) or isinstance(jb, (list, dict)):
                return bool(ja == jb)
        except (ValueError, RecursionError):
            pass
    na, nb = _norm(a), _norm(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    xa = _as_number(na)
    if xa is not None:
        nums = _NUMBER.findall(nb)
        return bool(nums) and math.isclose(xa, float(nums[-1].replace(",", "")))
    return len(na) < len(nb) and nb.endswith(na) and not nb[-len(na) - 1].isalnum()


def _final(rec: dict[str, Any]) -> str:
    return next((m.get("content") or "" for m in reversed(rec.get("messages") or []) if m["role"] == "assistant"), "")


def rightness(env: Environment, refs: dict[str, Reference]) -> Callable[[dict[str, Any]], bool]:
    """``right(record)``: the record's final answer is its task's right answer (only where the
    reference passes and its final text matters to the grader)."""
    def right(rec: dict[str, Any]) -> bool:
        ref = refs.get(rec["task_id"])
        if ref is None or not ref.text_matters or ref.score is None or not ref.score.passed:
            return False
        gold = ref.answer if ref.answer is not None else ref.final
        text = _final(rec)
        if len(text) > 4 * len(ref.final) + 400:  # not the same answer; and a long hostile text would make
            return False  # the answer-block search quadratic (thousands of unclosed tags)
        return same_answer(extract_answer(env, text) or text, gold)

    return right


# ------------------------------------------------------------------ judging one probe
def _crashes(recs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["outcome"] in Outcome.CODE_ERRORS
            and "GraderUndecided" not in (r.get("error") or "")]


def last_line(s: str | None) -> str:
    lines = (s or "").strip().splitlines()
    return lines[-1][:200] if lines else ""


def _tasks(recs: Sequence[dict[str, Any]]) -> int:
    return len({r["task_id"] for r in recs})


@dataclass
class _Group:
    """The statistics of one probe (or one arm of it) against noop."""

    label: str | None
    kind: str = "ok"
    reason: str = ""
    n: int = 0
    passes: int = 0
    right: int = 0
    wrong_passes: int = 0
    tasks: int = 0
    tasks_passed: int = 0
    mean: float | None = None
    p_pass: float = 1.0
    p_score: float = 1.0
    lead: float = 0.0
    count: int = 0  # tasks behind the verdict: passed with a wrong answer, or better rewarded than noop
    example: dict[str, Any] | None = None


_RANK = {"exploit": 2, "reward_leak": 1, "ok": 0}


def _judge_group(label: str | None, recs: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]], *,
                 strict: bool, right: Callable[[dict[str, Any]], bool] | None, ref_mean: float, alpha: float,
                 margin: float) -> _Group:
    scored = [r for r in recs if r["outcome"] in Outcome.SCORED]
    lucky = {id(r) for r in scored if right is not None and right(r)}
    rest = [r for r in scored if id(r) not in lucky]
    wrong = [r for r in rest if r["passed"]]
    task_pass: dict[str, bool] = {}
    per_task: dict[str, list[float]] = defaultdict(list)
    for r in scored:
        task_pass[r["task_id"]] = task_pass.get(r["task_id"], False) or (bool(r["passed"]) and id(r) not in lucky)
    for r in rest:
        per_task[r["task_id"]].append(float(r["score"]))
    b_scored = [r for r in base if r["outcome"] in Outcome.SCORED]
    b_pass: dict[str, bool] = {}
    b_task: dict[str, list[float]] = defaultdict(list)
    for r in b_scored:
        b_pass[r["task_id"]] = b_pass.get(r["task_id"], False) or bool(r["passed"])
        b_task[r["task_id"]].append(float(r["score"]))
    b_means = {t: sum(v) / len(v) for t, v in b_task.items()}
    b_mean = sum(float(r["score"]) for r in b_scored) / len(b_scored) if b_scored else 0.0
    tn, tk = len(task_pass), sum(task_pass.values())
    btn, btk = len(b_pass), sum(b_pass.values())
    g = _Group(label, n=len(scored), passes=sum(bool(r["passed"]) for r in scored),
               right=sum(bool(r["passed"]) for r in scored if id(r) in lucky),
               wrong_passes=len(wrong), tasks=tn, tasks_passed=tk)
    g.p_pass = fisher_greater(tk, tn, btk, btn)
    means = {t: sum(v) / len(v) for t, v in per_task.items()}
    wins = sum(v > b_means.get(t, 0.0) + 1e-9 for t, v in means.items())
    losses = sum(v < b_means.get(t, 0.0) - 1e-9 for t, v in means.items())
    g.p_score = sign_test_greater(wins, losses)
    g.mean = sum(float(r["score"]) for r in rest) / len(rest) if rest else None
    g.lead = (g.mean - b_mean) if g.mean is not None else 0.0
    share, b_share = (tk / tn if tn else 0.0), (btk / btn if btn else 0.0)
    chance = f"; {g.right} more with the right answer (lucky guesses)" if g.right else ""
    what = f"the answer {label!r} " if label is not None else ""
    wrongly = " with an answer that is not the right one" if right is not None else ""
    need = max(margin, 0.5 * (ref_mean - b_mean))
    g.count = tk
    if strict and wrong:
        g.kind, g.example = "exploit", max(wrong, key=lambda r: float(r["score"]))
        g.reason = (f"{what}passed {len(wrong)}/{g.n} rollouts ({tk}/{tn} tasks){wrongly}{chance}")
    elif tk and g.p_pass < alpha and share - b_share >= margin:
        g.kind, g.example = "exploit", max(wrong, key=lambda r: float(r["score"]))
        g.reason = (f"{what}passes {tk}/{tn} tasks{wrongly} vs noop {btk}/{btn} "
                    f"(one-sided Fisher p={g.p_pass:.2g}){chance}")
    elif g.mean is not None and g.p_score < alpha and g.lead >= margin:
        g.kind = "exploit" if g.lead >= need else "reward_leak"
        g.count = wins
        g.example = max(rest, key=lambda r: float(r["score"]))
        g.reason = (f"{what}earns a mean reward of {g.mean:.3f} vs noop {b_mean:.3f} (sign test over tasks "
                    f"p={g.p_score:.2g}); the reference solution earns {ref_mean:.3f}"
                    + (", so this is at least half of it" if g.kind == "exploit" else
                       ": no pass, but a reward for no work that training would learn from"))
    else:
        parts = [f"{g.right} pass(es) with the right answer (lucky guesses)"] if g.right else []
        if tk:
            parts.append(f"{tk}/{tn} tasks passed otherwise vs noop {btk}/{btn}, not beyond chance "
                         f"(Fisher p={g.p_pass:.2g})")
        if g.mean is not None and abs(g.lead) > 1e-9:
            parts.append(f"mean reward {g.mean:.3f} vs noop {b_mean:.3f} (sign test p={g.p_score:.2g})")
        g.reason = "; ".join(parts) or ("no pass, no reward above noop" if g.n else "no scored rollouts")
    return g


def _arm_label(rec: dict[str, Any]) -> str:
    info = (rec.get("policy_info") or [{}])[-1]
    return str(info.get("answer", f"arm {rec['sample']}"))


def judge_probe(name: str, recs: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]], *, strict: bool = True,
                right: Callable[[dict[str, Any]], bool] | None = None, per_arm: bool = False, ref_mean: float = 1.0,
                alpha: float = 0.01, margin: float = 0.1, slow_grade_s: float = 1.0) -> ProbeResult:
    """The verdict and findings of one probe's records against the noop baseline's (see the
    module docstring). ``right(record)`` tells a lucky guess (the right answer) from an exploit;
    ``per_arm`` judges each arm (the same answer on every task) on its own, at ``alpha`` divided
    by the number of arms."""
    groups: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        groups[_arm_label(r) if per_arm else None].append(r)
    a = alpha / max(1, len(groups))
    judged = [_judge_group(label, g, base, strict=strict, right=right, ref_mean=ref_mean, alpha=a, margin=margin)
              for label, g in groups.items()] or [_Group(None, reason="no rollouts")]
    worst = max(judged, key=lambda g: (_RANK[g.kind], g.tasks_passed, g.lead))
    scored = [r for r in recs if r["outcome"] in Outcome.SCORED]
    grade_s = [r.get("timings", {}).get("grade_s", 0.0) for r in recs]
    res = ProbeResult(name, worst.kind, worst.reason, strict=strict, n=len(scored),
                      passes=sum(bool(r["passed"]) for r in scored), right=sum(g.right for g in judged),
                      exploit_rate=(worst.wrong_passes / worst.n) if worst.n else None,
                      mean_score=sum(float(r["score"]) for r in scored) / len(scored) if scored else None,
                      max_score=max((float(r["score"]) for r in scored), default=None),
                      errors=len(recs) - len(scored), p_pass=worst.p_pass, p_score=worst.p_score,
                      grade_s_max=max(grade_s, default=None), arm=worst.label if worst.kind != "ok" else None,
                      example=worst.example)
    if per_arm and worst.kind == "ok":
        lucky = sum(g.right for g in judged)
        res.reason = (f"{lucky} pass(es) with the right answer (lucky guesses); " if lucky else "") + (
            f"none of {len(judged)} answers passes beyond chance or earns reward above noop")
    bad = [g for g in judged if g.kind != "ok"]
    if bad:
        more = f" ({len(bad)} of {len(judged)} answers do)" if per_arm and len(bad) > 1 else ""
        res.findings.append(Finding(worst.kind, "probe", name, worst.reason + more, worst.count, worst.tasks,
                                    worst.example))
    crashes = _crashes(recs)
    if crashes:
        c = crashes[0]
        msg = (f"{len(crashes)} rollout(s) on {_tasks(crashes)}/{_tasks(recs)} tasks ended as {c['outcome']} "
               f"({last_line(c.get('error'))}): agent output that crashes the grader or a tool escapes its zero "
               "reward")
        res.findings.append(Finding("crash", "probe", name, msg, _tasks(crashes), _tasks(recs), c))
    slow_limit = max(slow_grade_s, 20 * max((r.get("timings", {}).get("grade_s", 0.0) for r in base), default=0.0))
    slow = [r for r, t in zip(recs, grade_s, strict=True) if t > slow_limit]
    if slow:
        msg = (f"grading took up to {max(grade_s):.1f}s on {len(slow)} rollout(s) of {_tasks(slow)} task(s) "
               f"(limit {slow_limit:.1f}s): agent output can stall the grader")
        res.findings.append(Finding("stall", "probe", name, msg, _tasks(slow), _tasks(recs), slow[0]))
    policy_errors = [r for r in recs if r["outcome"] == Outcome.POLICY_ERROR]
    if policy_errors:
        msg = f"the probe failed on {len(policy_errors)} rollout(s): {last_line(policy_errors[0].get('error'))}"
        res.findings.append(Finding("error", "probe", name, msg, _tasks(policy_errors), _tasks(recs),
                                    policy_errors[0]))
    if res.findings:
        first = min(res.findings, key=lambda f: list(KINDS).index(f.kind))
        res.verdict, res.reason, res.example = first.kind, first.message, first.example
    return res


# ------------------------------------------------------------------ leaks: was the value private?
def _private(env: Environment, task: Task, ref: Reference | None) -> list[tuple[str, str]]:
    """What the agent must work out or must not be shown: the reference answer, the values of
    ``task.data`` and the arguments of the reference solution's write calls."""
    out = [("the reference answer", ref.answer)] if ref is not None and ref.answer else []
    out += [(path, str(v)) for path, v in flat_values(task.data) if str(v).strip()]
    for a in ref.actions if ref is not None else []:
        for c in a.tool_calls:
            if c.name in env.tools and env.tools[c.name].writes and isinstance(c.arguments, dict):
                out += [(f"the reference solution's {c.name}.{k}", str(v)) for k, v in c.arguments.items()
                        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip()]
    return out


def _is(value: str, secret: str) -> bool:
    if value.strip() == secret.strip():
        return True
    x, y = _as_number(value.strip()), _as_number(secret.strip())
    return x is not None and y is not None and math.isclose(x, y)


def leak_finding(env: Environment, name: str, recs: Sequence[dict[str, Any]], tasks: dict[str, Task],
                 refs: dict[str, Reference]) -> tuple[str, Finding | None]:
    """What a leak probe saw that was private: a note, and a ``leak`` finding (the caller drops it
    when the probe's use of the value is an exploit already)."""
    hits: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
    for r in recs:
        t = tasks.get(r["task_id"])
        if t is None:
            continue
        secrets = _private(env, t, refs.get(t.id))
        seen = [(label, s) for info in r.get("policy_info") or [] for s in info.get("leaks") or []
                for label, value in secrets if _is(s["value"], value)]
        if seen:
            hits.append((r, *seen[0]))
    if not hits:
        return "", None
    rec, label, s = hits[0]
    n_tasks = len({r["task_id"] for r, _, _ in hits})
    note = (f"private values shown to the agent in {len(hits)}/{len(recs)} rollouts ({n_tasks} tasks), e.g. "
            f"{label} = {s['value'][:40]!r} in the {s['seen_in']} (under {s['label']!r})")
    return note, Finding("leak", "probe", name, note + ", but using it did not pass", n_tasks, _tasks(recs), rec)


# ------------------------------------------------------------------ mutations and the reference
def mutation_findings(m: MutationReport | None, n_tasks: int) -> list[Finding]:
    """One finding per mutation and kind: lenient (a wrong one kept its score), strict (an
    equivalent one lost it), crash (the replay raised); and the reference solution failing."""
    if m is None:
        return []
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    tried: dict[str, set[str]] = defaultdict(set)
    for o in m.outcomes:
        if o.status != "not_applicable":
            tried[o.name].add(o.task_id)
        if o.status == "survived":
            groups[("lenient", o.name)].append(o)
        elif o.status == "dropped" and o.score is not None:
            groups[("strict", o.name)].append(o)
        elif o.status in ("error", "dropped"):
            groups[("crash", o.name)].append(o)
    out = []
    for (kind, name), items in groups.items():
        o = items[0]
        k, n = len({x.task_id for x in items}), len(tried[name])
        what = {"lenient": "a wrong change kept its score", "strict": "an equivalent change lost its score",
                "crash": "replaying the changed solution failed"}[kind]
        msg = f"{what} on {k}/{n} tasks, e.g. task {o.task_id}: {o.detail}" + (
            f" ({o.explanation[:160]})" if o.explanation else "")
        ex = {"task_id": o.task_id, "score": o.score, "explanation": o.explanation, "messages": o.example or []}
        out.append(Finding(kind, "mutation", name, msg, k, n, ex))
    if m.reference_failed:
        failed = m.reference_failed
        msg = (f"the reference solution does not pass on {len(failed)}/{n_tasks} task(s) (e.g. {failed[0]}); "
               "their mutation tests did not run")
        out.append(Finding("reference", "reference", "reference solution", msg, len(failed), n_tasks))
    return out


__all__ = [
    "DEFAULT_FAIL_ON", "KINDS", "Finding", "ProbeResult", "fisher_greater", "judge_probe", "last_line", "leak_finding",
    "mutation_findings", "parse_fail_on", "rightness", "same_answer", "sign_test_greater",
]
