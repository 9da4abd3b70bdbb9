"""``envfoundry calibrate``: measure how hard each task is for one model, adaptively.

Round 1 runs every task ``samples`` (K) times through the normal engine into the run store
``OUT/round-1``. Each task gets an interval on its pass rate and a verdict against the band
(rules in :mod:`envfoundry.quality.difficulty`): an exact interval whose 5% error is spent across
the rounds that sample the task, so that the interval a task ends with covers its pass rate with
at least 95% probability however early the adaptive design stopped it. Decided tasks (too_easy, in_band, too_hard)
get no more samples; the undecided ones (uncertain, floor_unverified) get more in later rounds
``OUT/round-N`` until they are decided or ``budget`` rollouts are spent. Each later round gives
every undecided task as many new samples as the fewest any of them has had (so evidence roughly
doubles per round), fewer when the budget runs short. Sample indices continue across rounds
(round 2 starts at K), so rollout seeds never repeat. Error outcomes count against the budget but
are not samples; a task whose every rollout errored gets no more rounds.

Resumable: a killed calibrate continues with ``resume=True``; unfinished rounds are completed
(their error rollouts re-run), then planning goes on from the stored evidence. Everything is a
deterministic function of the seed and the model's answers.

Files in OUT: ``difficulty.jsonl``, ``calibration.json``, ``keep.txt`` / ``drop.txt`` (task ids by
the trainers' min/max-accuracy filter ``lo <= p_hat <= hi``), ``calibrated_split.json`` (the
in-band tasks, for ``envfoundry run ENV --split calibrated --calibration OUT``), ``evidence.jsonl``,
``state.json``, ``pass_rates.png`` and with ``knobs`` ``knobs.png`` (when matplotlib is installed).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.env import Environment
from ..core.errors import StoreError, UsageError
from ..core.files import atomic_write_text, ensure_dir
from ..core.policy import KeepAlive, Policy
from ..core.resume import differences, refuse_differences
from ..rollout.pool import check_workers
from ..rollout.run import Progress, evaluate_async
from ..rollout.selection import CALIBRATED_SPLIT_FILE, CalibratedSplit, select_tasks
from ..rollout.store import RunStore
from .difficulty import (
    ALPHA,
    DECIDED,
    TaskDifficulty,
    TaskEvidence,
    difficulty,
    group_metrics,
    in_bounds,
    knob_table,
)
from .difficulty import knobs_of as _knobs_of
from .difficulty import shares as _shares
from .evidence import CalibrationState, EvidenceLedger, Round, allocated, list_rounds, round_dir

DEFAULT_BAND = (0.02, 0.98)
DEFAULT_SAMPLES = 8
INTERVAL_RULE = (f"Clopper-Pearson; after a task's j-th round at level 1 - {ALPHA:g} * 6 / (pi^2 j^2), "
                 f"so its final interval covers with >= {1 - ALPHA:.0%} under adaptive stopping")


class CalibrateConfig(BaseModel):
    """Options of :func:`calibrate`. ``None`` means the default, or the stored value on resume.

    ``budget`` is the total rollouts over all rounds (default 2 x tasks x samples); ``band`` the
    pass rates worth training on; ``samples`` the initial samples per task (the GRPO group size).
    """

    model_config = ConfigDict(frozen=True)

    split: str | None = None
    limit: int | None = Field(None, ge=0)
    samples: int | None = Field(None, ge=1)
    budget: int | None = Field(None, ge=1)
    band: tuple[float, float] | None = None
    seed: int | None = None
    task_seed: int | None = None
    concurrency: int = Field(32, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    max_turns: int | None = Field(None, ge=1)
    knobs: bool = False
    max_rounds: int = Field(32, ge=1)


@dataclass
class Calibration:
    """What :func:`calibrate` returns: the summary written to ``calibration.json`` and the rows."""

    out: Path
    summary: dict[str, Any]
    rows: list[TaskDifficulty]
    knobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plot_hint: str | None = None


def check_band(band: Sequence[float]) -> tuple[float, float]:
    """``(lo, hi)`` with ``0 <= lo < hi <= 1``, else a UsageError naming the problem."""
    if len(band) != 2:
        raise UsageError(f"--band needs two numbers LO,HI, got {len(band)}")
    lo, hi = float(band[0]), float(band[1])
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise UsageError(f"--band values must lie in [0, 1], got {lo:g},{hi:g}")
    if lo >= hi:
        raise UsageError(f"--band needs LO < HI, got {lo:g},{hi:g}")
    return lo, hi


def parse_band(text: str) -> tuple[float, float]:
    """Parse ``"0.02,0.98"``."""
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"--band expects two numbers LO,HI such as 0.02,0.98, got {text!r}") from None
    return check_band(parts)


def plan_round(
    order: Sequence[str], evidence: Mapping[str, TaskEvidence], rows: Mapping[str, TaskDifficulty],
    slots: Mapping[str, int], *, samples: int, budget_left: int,
) -> tuple[list[str], int] | None:
    """The next round as (task ids, samples per task), or None when nothing is left to do.

    Tasks never sampled get ``samples`` each. Otherwise every undecided task (whose rollouts are
    not all errors) gets as many samples as the fewest slots among them, at least ``samples``;
    with too little budget left, fewer each, or one each for the least-sampled tasks first.
    """
    fresh = [t for t in order if slots.get(t, 0) == 0]
    if fresh:
        if len(fresh) * samples > budget_left:
            raise UsageError(f"the budget left ({budget_left}) cannot give {len(fresh)} new tasks {samples} samples")
        return fresh, samples
    todo = [t for t in order if rows[t].verdict not in DECIDED and evidence[t].n > 0]
    if not todo or budget_left <= 0:
        return None
    k = max(samples, min(slots[t] for t in todo))
    if budget_left >= len(todo) * k:
        return todo, k
    if budget_left >= len(todo):
        return todo, budget_left // len(todo)
    rank = {t: i for i, t in enumerate(order)}
    return sorted(todo, key=lambda t: (slots[t], rank[t]))[:budget_left], 1


def rounds_per_task(rounds: Iterable[Round]) -> dict[str, int]:
    """How many rounds sampled each task: the index of its latest look at the evidence, which
    sets the level of its interval (:func:`~envfoundry.quality.difficulty.round_alpha`)."""
    return dict(Counter(t for r in rounds for t in r.task_ids))


def assess(
    order: Sequence[str], evidence: Mapping[str, TaskEvidence], sampled: Mapping[str, int], *,
    band: tuple[float, float], solvable: bool, knobs: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, TaskDifficulty]:
    """Every task's row (interval and verdict) from its evidence and the rounds that sampled it."""
    return {t: difficulty(evidence[t], band, solvable=solvable, knobs=dict((knobs or {}).get(t, {})),
                          rounds=sampled.get(t, 0)) for t in order}


def next_round(
    order: Sequence[str], evidence: Mapping[str, TaskEvidence], slots: Mapping[str, int],
    sampled: Mapping[str, int], *, band: tuple[float, float], solvable: bool, samples: int, budget_left: int,
) -> tuple[list[str], int] | None:
    """The adaptive design's whole decision between rounds, a pure function of the evidence:
    verdicts (:func:`assess`), then :func:`plan_round`. The run and the coverage simulation
    (:mod:`envfoundry.quality.calibrate_sim`) both call it."""
    rows = assess(order, evidence, sampled, band=band, solvable=solvable)
    return plan_round(order, evidence, rows, slots, samples=samples, budget_left=budget_left)


def _clean_options(opts: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (opts or {}).items():
        if isinstance(v, dict):
            v = {a: b for a, b in v.items() if b is not None}
        if v is not None and v != {} and not (k == "tool_mode" and v == "auto"):
            out[k] = v
    return out


def _open_state(
    out: Path, env: Environment, env_spec: str, *, model: str | Policy | None, config: CalibrateConfig,
    resume: bool, model_options: dict[str, Any], env_args: dict[str, str],
) -> CalibrationState:
    spec = model if isinstance(model, str) else (model.describe().get("spec", model.name) if model else None)
    if resume:
        st = CalibrationState.load(out)
        if (st.env, st.env_version) != (env.name, env.version):
            raise StoreError(f"{str(out)!r} calibrates {st.env} {st.env_version}, not {env.name} {env.version}")
        what = f"the calibration in {str(out)!r}"
        fixed = {"split": config.split, "seed": config.seed, "task_seed": config.task_seed,
                 "samples": config.samples, "model": spec, "env_args": env_args or None}
        phrases = differences(st.model_dump(), fixed, what=what, names={"env_args": "--env-arg"})
        phrases += differences(st.model_options, model_options, what=what,
                               names={k: f"model option {k}" for k in model_options})
        refuse_differences(phrases)
        upd = {"band": config.band or st.band, "budget": config.budget or st.budget,
               "limit": config.limit if config.limit is not None else st.limit}
        return st.model_copy(update=upd)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{str(out)!r} exists and is not a directory; choose another --out")
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"{str(out)!r} is not empty; pass --resume to continue that calibration "
                         "or choose another --out")
    if spec is None:
        raise UsageError("calibrate needs --model")
    seed = config.seed or 0
    return CalibrationState(
        env=env.name, env_version=env.version, env_spec=env_spec, env_args=env_args,
        split=config.split or "test", seed=seed, task_seed=seed if config.task_seed is None else config.task_seed,
        samples=config.samples or DEFAULT_SAMPLES, model=spec, model_options=model_options, limit=config.limit,
        band=config.band or DEFAULT_BAND, budget=config.budget or 0,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


async def calibrate_async(
    env: Environment | str,
    *,
    model: str | Policy | None,
    out: str | Path,
    config: CalibrateConfig | None = None,
    resume: bool = False,
    model_options: dict[str, Any] | None = None,
    env_args: dict[str, str] | None = None,
    progress: Progress | None = None,
    on_round: Callable[[Round, bool], None] | None = None,
    workers: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
) -> Calibration:
    """Calibrate ``env`` for ``model`` into ``out`` (see the module docstring).

    ``model`` is a spec or a Policy (None on resume: the stored one); ``model_options`` and
    ``workers``, ``backend`` and ``ray_address`` as for :func:`~envfoundry.rollout.run.evaluate_async`
    (``backend="ray"``: every round's rollouts run on the Ray cluster). ``on_round(round, resumed)``
    is called before each round runs.
    """
    from ..core.loading import load
    from ..policies import resolve_policy

    cfg = config or CalibrateConfig()
    if workers < 1 or workers > cfg.concurrency:
        raise UsageError(f"workers must be between 1 and the concurrency ({cfg.concurrency}), got {workers}")
    band = check_band(cfg.band) if cfg.band is not None else None
    cfg = cfg.model_copy(update={"band": band})
    out = Path(out)
    env_spec = env if isinstance(env, str) else env.name
    if resume and isinstance(env, str):
        stored = CalibrationState.load(out)
        if env not in (stored.env, stored.env_spec):
            raise StoreError(f"{str(out)!r} calibrates {stored.env_spec!r}, not {env!r}")
        env_spec = stored.env_spec
        env_args = stored.env_args if env_args is None else env_args
    env_obj = load(env_spec, env_args) if isinstance(env, str) else env
    opts = _clean_options(model_options)
    n_slots = opts.pop("slots", None)  # a setting of this process (local servers), not of the calibration
    st = _open_state(out, env_obj, env_spec, model=model, config=cfg, resume=resume, model_options=opts,
                     env_args=dict(env_args or {}))
    tasks = select_tasks(env_obj, st.split, limit=st.limit, task_seed=st.task_seed)
    if not tasks:
        raise UsageError(f"no tasks selected from {env_obj.name!r} split {st.split!r} (limit {st.limit})")
    if not resume and st.limit is not None and len(tasks) < st.limit:
        raise UsageError(f"--limit {st.limit} asks for more tasks than {env_obj.name} split {st.split!r} has "
                         f"({len(tasks):,}); give --limit {len(tasks)} or leave --limit out to calibrate them all")
    order = [t.id for t in tasks]
    rounds = list_rounds(out) if resume else []
    used = sum(r.slots for r in rounds)
    slots = allocated(rounds)
    fresh = sum(1 for t in order if slots.get(t, 0) == 0)
    if not st.budget:
        st = st.model_copy(update={"budget": 2 * len(order) * st.samples})
    if st.budget < used + fresh * st.samples:
        if not fresh:  # a resume: every task has its first round already
            raise UsageError(f"--budget {st.budget} is not more than the {used} rollouts already used; "
                             "give a larger --budget to continue")
        need = f"{fresh} tasks x {st.samples} samples = {fresh * st.samples}"
        raise UsageError(f"--budget {st.budget} is too small: the first round needs {need} rollouts"
                         + (f" on top of the {used} already used" if used else ""))
    # resolved before anything is written: a bad --model must not leave a folder behind
    pol = (model if model is not None and not isinstance(model, str)
           else resolve_policy(st.model, **st.model_options, slots=n_slots))
    if workers > 1 or backend == "ray":  # refused before anything is written
        check_workers(env_obj, getattr(env_obj, "loaded_from", None), tasks, pol,
                      **({"need": "--backend ray"} if backend == "ray" else {}))
    ensure_dir(out, "calibration directory")
    st.save(out)

    ledger = EvidenceLedger(out, env=env_obj.name, env_version=env_obj.version, model=st.model)
    shared = KeepAlive(pol)
    run_kw: dict[str, Any] = {"concurrency": cfg.concurrency, "timeout_s": cfg.timeout_s,
                              "max_turns": cfg.max_turns, "progress": progress, "workers": workers,
                              "backend": backend, "ray_address": ray_address}
    solvable = env_obj.has_reference
    try:
        for rnd in rounds:
            if rnd.finished_cleanly() and ledger.has_round(rnd):
                continue
            if on_round is not None:
                on_round(rnd, True)
            stored = RunStore.open(rnd.path).manifest.concurrency
            await evaluate_async(env_obj, model=shared, out=rnd.path, resume=True, progress=progress,
                                 workers=min(workers, stored), backend=backend, ray_address=ray_address)
            ledger.record_round(rnd)
        while len(rounds) < cfg.max_rounds:
            plan = next_round(order, ledger.evidence(order), slots, rounds_per_task(rounds), band=st.band,
                              solvable=solvable, samples=st.samples, budget_left=st.budget - used)
            if plan is None:
                break
            ids, k = plan
            offset = max((r.offset + r.samples for r in rounds), default=0)
            rnd = Round(len(rounds) + 1, round_dir(out, len(rounds) + 1), tuple(ids), k, offset)
            if on_round is not None:
                on_round(rnd, False)
            await evaluate_async(
                env_obj, model=shared, out=rnd.path, split=st.split, limit=st.limit, samples=k,
                seed=st.seed, task_seed=st.task_seed, task_ids=ids, sample_offset=offset, **run_kw,
            )
            ledger.record_round(rnd)
            rounds.append(rnd)
            used += rnd.slots
            for t in ids:
                slots[t] = slots.get(t, 0) + k
    finally:
        if shared.started:
            await asyncio.shield(pol.close())
    return write_report(out, env_obj, st, tasks=tasks, ledger=ledger, rounds=rounds, knobs=cfg.knobs,
                        policy=pol.describe())


def write_report(
    out: Path, env: Environment, st: CalibrationState, *, tasks: Sequence[Any], ledger: EvidenceLedger,
    rounds: Sequence[Round], knobs: bool, policy: dict[str, Any],
) -> Calibration:
    """Write difficulty.jsonl, keep/drop lists, the calibrated split, calibration.json and plots."""
    from . import plots

    order = [t.id for t in tasks]
    evidence = ledger.evidence(order)
    by_id = assess(order, evidence, rounds_per_task(rounds), band=st.band, solvable=env.has_reference,
                   knobs={t.id: _knobs_of(t.metadata) for t in tasks})
    rows = [by_id[t] for t in order]
    atomic_write_text(out / "difficulty.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    keep = [r.task_id for r in rows if in_bounds(r.p_hat, st.band)]
    kept = set(keep)
    atomic_write_text(out / "keep.txt", "".join(t + "\n" for t in keep))
    atomic_write_text(out / "drop.txt", "".join(r.task_id + "\n" for r in rows if r.task_id not in kept))
    in_band = [r.task_id for r in rows if r.verdict == "in_band"]
    split = CalibratedSplit(
        env=env.name, env_version=env.version, env_args=st.env_args, source_split=st.split, task_seed=st.task_seed,
        source_limit=st.limit, task_ids=in_band, model=st.model, band=st.band,
        rule="verdict == in_band: the pass rate's exact interval, its 5% error spent across the task's rounds, "
             "lies inside the band",
    )
    atomic_write_text(out / CALIBRATED_SPLIT_FILE, split.model_dump_json(indent=2))
    firsts = {t: ev.first(st.samples) for t, ev in evidence.items()}
    table = knob_table(rows, counts={t: (len(g), sum(p for _, p in g)) for t, g in firsts.items()}) if knobs else {}
    summary: dict[str, Any] = {
        "format": "envfoundry.calibration/1", "env": env.name, "env_version": env.version,
        "env_spec": st.env_spec, "env_args": st.env_args, "split": st.split, "limit": st.limit,
        "task_seed": st.task_seed, "seed": st.seed,
        "model": st.model, "policy": policy, "band": list(st.band), "samples": st.samples,
        "budget": st.budget, "budget_used": sum(r.slots for r in rounds), "tasks": len(rows),
        "scored_samples": sum(r.n for r in rows), "errors": sum(r.errors for r in rows),
        "solvable": env.has_reference,
        "rounds": [{"round": r.number, "tasks": len(r.task_ids), "samples": r.samples, "sample_offset": r.offset}
                   for r in rounds],
        "interval": INTERVAL_RULE,
        "verdicts": _shares(rows), "keep": len(keep), "drop": len(rows) - len(keep),
        "calibrated_split": len(in_band),
        **group_metrics(evidence, rows, samples=st.samples, band=st.band),
        "plots": {},
    }
    if knobs:
        summary["knobs"] = table
    title = f"{env.name} {env.version} - {st.model} ({len(rows)} tasks)"
    hint = None
    try:
        plots.plot_pass_rates(rows, st.band, out / "pass_rates.png", title=title)
        summary["plots"]["pass_rates"] = "pass_rates.png"
        if knobs:
            plots.plot_knobs(table, st.band, out / "knobs.png", title=title)
            summary["plots"]["knobs"] = "knobs.png"
    except ImportError:
        hint = plots.install_hint()
        summary["plots"]["missing"] = f"matplotlib is not installed; {hint}"
    atomic_write_text(out / "calibration.json", json.dumps(summary, indent=2))
    return Calibration(out, summary, rows, table, hint)


def calibrate(env: Environment | str, **kwargs: Any) -> Calibration:
    """Synchronous :func:`calibrate_async` (see there for the options)."""
    return asyncio.run(calibrate_async(env, **kwargs))
