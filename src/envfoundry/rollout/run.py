"""``evaluate``: run an environment's tasks with a policy into a run store, resumably."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import errno
import functools
import inspect
import math
import platform
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

from ..core.env import Environment
from ..core.errors import EnvfoundryError, ModelServerDied, RunWriteError, StoreError, UsageError
from ..core.loading import canonical_spec, is_url
from ..core.policy import Policy
from ..core.provenance import env_package
from ..core.resume import differences, refuse_differences
from ..core.sanitize import REDACTED
from ..core.task import Task
from ..core.version import __version__
from .config import MaxErrors, ModelOptions, RunConfig, check_max_errors  # noqa: F401 - re-exported
from .engine import RolloutConfig, iter_jobs, run_all
from .pool import WorkerError, check_workers, run_pool, split_concurrency
from .ray_backend import connect as connect_ray
from .ray_backend import run_ray
from .selection import CALIBRATED, load_calibrated_split, select_tasks
from .store import FLUSH_INTERVAL_S, RunManifest, RunStore
from .summary import Summary, light_record, summarize


class Progress(Protocol):
    """Receives progress events; the CLI draws a rich progress bar from them."""

    def start(self, total: int, done: int) -> None: ...
    def advance(self, record: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


def parse_max_errors(text: str) -> MaxErrors:
    """``--max-errors``: ``N`` (a count), ``P%`` or a fraction such as ``0.05`` (a share)."""
    import re

    t = text.strip()
    usage = f"--max-errors expects a count (5), a share (0.05) or a percentage (5%), got {text!r}"
    if re.fullmatch(r"\+?[0-9]+", t):
        return int(t)
    pct = t.endswith("%")
    try:
        x = float(t[:-1] if pct else t)
    except ValueError:
        raise UsageError(usage) from None
    if not math.isfinite(x):
        raise UsageError(usage)
    if x < 0:
        raise UsageError(f"--max-errors must be >= 0, got {text.strip()!r}")
    if pct and x > 100:
        raise UsageError(f"--max-errors as a percentage must be from 0% to 100%, got {text.strip()!r}")
    if not pct and x > 1:
        whole = f" (for a count, write it without a decimal point: {int(x)})" if x.is_integer() else ""
        raise UsageError(f"--max-errors as a share must be a number from 0 to 1, got {text.strip()!r}{whole}")
    return x / 100 if pct else x


@dataclass
class Run:
    """A run directory, opened for reading; after :func:`evaluate`, also whether it succeeded:
    :attr:`failure` says why not (its errored rollouts exceed ``max_errors``)."""

    path: Path
    manifest: RunManifest
    summary: dict[str, Any]
    max_errors: MaxErrors = 0

    @classmethod
    def open(cls, path: str | Path) -> Run:
        store = RunStore.open(path)
        summary = store.summary() or summarize(store.records(), samples=store.manifest.samples)
        return cls(store.path, store.manifest, summary)

    @property
    def n_errors(self) -> int:
        """Rollouts that ended in ``policy_error``, ``env_error`` or ``grader_error``."""
        return int(self.summary.get("n_errors") or 0)

    @property
    def tolerated(self) -> int:
        """The most errored rollouts this run may have and still succeed."""
        import numbers

        if isinstance(self.max_errors, numbers.Integral):
            return int(self.max_errors)
        # a share, rounded first: 0.29 * 100 is 28.999999999999996, and 29% of 100 rollouts is 29
        return math.floor(round(float(self.max_errors) * int(self.summary.get("n_trajectories") or 0), 6))

    @property
    def ok(self) -> bool:
        """True when the errored rollouts are within the tolerance (``max_errors``)."""
        return self.n_errors <= self.tolerated

    @property
    def failure(self) -> str | None:
        """Why the run failed (errors beyond ``max_errors``: how many, the commonest causes, what
        was measured, the command that runs them again), or None when it succeeded."""
        if self.ok:
            return None
        n, total = self.n_errors, int(self.summary.get("n_trajectories") or 0)
        causes = self.summary.get("error_causes") or []
        lines = [f"{n} of {total} rollouts ended in errors (tolerated: {self.tolerated}; see --max-errors)"]
        lines += [f"  {k} x {cause}" for cause, k in causes[:3]]
        if not self.summary.get("n_scored"):
            lines.append("nothing was measured: no rollout was scored")
        import numbers

        m = self.max_errors  # the tolerance is not stored with the run: the command gives it again
        again = "" if not m else f" --max-errors {m if isinstance(m, numbers.Integral) else f'{100 * m:g}%'}"
        lines.append(f"the errored rollouts are run again by: envfoundry run --out {shlex.quote(str(self.path))} "
                     f"--resume{again}")
        return "\n".join(lines)

    def records(self) -> Iterator[dict[str, Any]]:
        return RunStore.open(self.path).records()

    @property
    def pass_rate(self) -> float | None:
        return self.summary.get("pass_rate")


def _select(
    env: Environment, split: str, limit: int | None, task_seed: int, *,
    task_ids: Sequence[str] | None = None, calibration: str | Path | None = None,
) -> Sequence[Task]:
    """See :func:`~envfoundry.rollout.selection.select_tasks` (``--split calibrated``, task ids)."""
    return select_tasks(env, split, limit=limit, task_seed=task_seed, task_ids=task_ids, calibration=calibration)


def _policy_from(model: str | Policy, options: dict[str, Any] | None) -> Policy:
    if isinstance(model, str):
        from ..policies import resolve_policy

        return resolve_policy(model, **{k: v for k, v in (options or {}).items() if v is not None})
    return model


#: how a run's options are named when a resume refuses them (the flag, and the Python name where it differs)
_RUN_NAMES = {"timeout_s": "--timeout (timeout_s)", "env_args": "--env-arg (env_args)", "task_seed": "--task-seed",
              "max_turns": "--max-turns", "sample_offset": "sample_offset"}

#: the command-line flag of each sampling option (for messages)
_SAMPLING_FLAGS = {"temperature": "--temperature", "top_p": "--top-p", "max_tokens": "--max-tokens",
                   "seed": "--model-seed"}


def _resumed_options(stored: dict[str, Any], given: dict[str, Any] | None, out: str | Path) -> dict[str, Any]:
    """The model options of a resumed run: the stored sampling and tool mode, so the run does not
    mix two configurations (a given one that differs is refused); ``base_url``, ``api_key_env`` and
    ``slots`` say where and how the server runs, not what it samples: as given, else stored."""
    opts = {k: v for k, v in (given or {}).items() if v is not None}
    kept = stored.get("sampling") or {}
    asked = {k: v for k, v in (opts.get("sampling") or {}).items() if v is not None}
    what = f"the run in {str(out)!r}"
    phrases = differences(kept, {k: v for k, v in asked.items() if k in kept}, what=what, names=_SAMPLING_FLAGS)
    mode = stored.get("tool_mode")
    if mode is not None:
        phrases += differences({"tool_mode": mode}, {"tool_mode": opts.get("tool_mode")}, what=what)
        opts["tool_mode"] = mode
    refuse_differences(phrases)
    opts["sampling"] = {**kept, **asked}
    for k in ("base_url", "api_key_env"):  # the variable's name is stored, never the key
        if k not in opts and stored.get(k):
            opts[k] = stored[k]
    if REDACTED in str(opts.get("base_url", "")) and not (given or {}).get("base_url"):
        raise UsageError(f"the run in {str(out)!r} was made with a credential in its base URL, which is not stored: "
                         "give --base-url again to resume it")
    return opts


#: the run options a resume compares with the stored run (the rest say how it is executed)
_RESUMABLE = ("split", "limit", "samples", "seed", "task_seed", "timeout_s", "max_turns")


@dataclass
class _Plan:
    """A run ready to execute: its store, environment, tasks, policy and what is already done."""

    store: RunStore
    env: Environment
    tasks: Sequence[Task]
    policy: Policy
    cfg: RolloutConfig
    done: dict[Any, Any]
    source: Any
    blob: bytes | None
    workers: int
    resumed: bool
    backend: str = "local"


async def evaluate_async(
    env: Environment | str,
    *,
    model: str | Policy,
    out: str | Path,
    config: RunConfig | None = None,
    model_options: ModelOptions | dict[str, Any] | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Run:
    """Run ``samples`` rollouts of each selected task and store them under ``out``.

    The run's options are a :class:`~envfoundry.rollout.config.RunConfig` (``config``) or its fields
    as keyword arguments (``split``, ``limit``, ``samples``, ``seed``, ``task_seed``, ``timeout_s``,
    ``max_turns``, ``env_args``, ``calibration``, ``task_ids``, ``sample_offset``, ``concurrency``,
    ``workers``, ``backend``, ``ray_address``, ``max_errors``, ``strict_limit``); a bad or unknown
    one is a UsageError naming it.
    ``model`` is a spec (``scripted:oracle``, ``local``, ``openai:NAME``) or a Policy object;
    ``model_options`` (a :class:`~envfoundry.rollout.config.ModelOptions` or a dict of its fields)
    go to :func:`~envfoundry.policies.resolve_policy`.

    On ``resume`` the stored run's selection, seeds, environment arguments, sampling and tool mode
    are used; an option given with another value is refused, naming it (:mod:`envfoundry.core.resume`);
    the base URL is the stored one unless given; ``concurrency`` (default: the stored one), ``workers``
    and slots are settings of this process. ``concurrency`` defaults to 32 for a new run.

    ``task_ids`` narrows the split's first ``limit`` tasks to these ids (in this order).
    ``sample_offset`` numbers the samples ``sample_offset .. sample_offset + samples - 1``, so a
    later round of the same tasks gets fresh rollout seeds (``calibrate`` uses both).
    ``split="calibrated"`` with ``calibration`` (a calibrate output directory or its
    ``calibrated_split.json``) runs the tasks listed there.
    ``workers`` > 1 shares the rollouts among that many processes (see :mod:`.pool`); the
    environment must then be a spec or come from :func:`envfoundry.load`. ``backend="ray"`` runs
    them on the Ray cluster at ``ray_address`` (see :mod:`.ray_backend`; ``workers`` > 1: that many actors).
    ``max_errors`` is how many errored rollouts the run tolerates (a count, or a share as a float
    in [0, 1]; default none): the returned :class:`Run`'s ``ok`` and ``failure`` say whether it
    succeeded. ``limit`` larger than the split is an error with ``strict_limit`` (the CLI's
    ``--limit``), else a warning.

    A model server that this run started and that dies stops the run with
    :class:`~envfoundry.core.errors.ModelServerDied` (its exit status and log tail; the logs are
    copied into ``out/server-logs``); nothing is recorded against the dead server.
    """
    rc = RunConfig.of(config, options)
    mo = ModelOptions.of(model_options)
    plan = await (_plan_resumed if resume else _plan_new)(env, model, out, rc, mo)
    return await _execute(plan, progress, rc.max_errors)


async def _plan_resumed(env: Environment | str, model: str | Policy, out: str | Path, rc: RunConfig,
                        model_options: ModelOptions) -> _Plan:
    """Open a stored run to continue it: its configuration, the policy, the tasks not yet done."""
    from ..core.loading import load

    env_spec = canonical_spec(env) if isinstance(env, str) else env.name
    store = RunStore.open(out)
    m = store.manifest
    # a served environment may come back at another URL: the name, version and task ids below must match
    moved = isinstance(env, str) and is_url(env) and is_url(m.env_spec) and env_spec != m.env_spec
    if isinstance(env, str) and not moved and not {env, env_spec} & {m.env, m.env_spec, canonical_spec(m.env_spec)}:
        raise StoreError(f"run {str(out)!r} is of environment {m.env_spec!r}, not {env!r}")
    given = {**rc.model_dump(include=set(_RESUMABLE)), "env_args": rc.env_args or None,
             "calibration": str(Path(rc.calibration).resolve()) if rc.calibration is not None else None,
             "sample_offset": rc.sample_offset or None}
    refuse_differences(differences(m.model_dump(), given, what=f"the run in {str(out)!r}", names=_RUN_NAMES))
    where = env_spec if moved else m.env_spec
    try:
        env_obj = load(where, m.env_args) if isinstance(env, str) else env
    except ConnectionError as e:
        if not (isinstance(e, EnvfoundryError) and is_url(where)):
            raise
        raise type(e)(f"{e}; if the server now listens at another URL, give it: "
                      f"`envfoundry run URL --out {shlex.quote(str(out))} --resume`") from None
    if env_obj.name != m.env:
        raise StoreError(f"run {str(out)!r} is of environment {m.env!r}, not {env_obj.name!r}")
    if env_obj.version != m.env_version:
        raise StoreError(
            f"run {str(out)!r} used {m.env} {m.env_version}; this is {m.env} {env_obj.version}"
        )
    opts = _resumed_options(m.policy, model_options.resolve_kwargs(), out) if isinstance(model, str) else {}
    policy = _policy_from(model, opts)
    spec = policy.describe().get("spec")
    if spec != m.policy.get("spec"):
        raise StoreError(f"run {str(out)!r} used policy {m.policy.get('spec')!r}, not {spec!r}")
    tasks_all = _select(env_obj, m.split, m.limit, m.task_seed, calibration=m.calibration)
    by_id = {t.id: t for t in tasks_all}
    missing = [t for t in m.task_ids if t not in by_id]
    if missing:
        raise StoreError(
            f"run {str(out)!r}: {len(missing)} task ids no longer generated by "
            f"{m.env} (e.g. {missing[0]}); the environment changed"
        )
    tasks = [by_id[t] for t in m.task_ids]
    source = (where, m.env_args) if isinstance(env, str) else getattr(env_obj, "loaded_from", None)
    conc = m.concurrency if rc.concurrency is None else rc.concurrency
    if conc < 1:
        raise UsageError(f"concurrency must be >= 1, got {conc}")
    if rc.workers > conc:
        raise UsageError(f"workers ({rc.workers}) must not exceed the concurrency ({conc})")
    blob = _check_backend(env_obj, source, tasks, policy, rc)
    cfg = RolloutConfig(samples=m.samples, concurrency=conc, seed=m.seed,
                        timeout_s=m.timeout_s, max_turns=m.max_turns)
    try:
        done = store.prepare_resume()
    except OSError as e:
        _raise_write_error(e, store.path)
    return _Plan(store, env_obj, tasks, policy, cfg, done, source, blob, rc.workers, resumed=True, backend=rc.backend)


async def _plan_new(env: Environment | str, model: str | Policy, out: str | Path, rc: RunConfig,
                    model_options: ModelOptions) -> _Plan:
    """Select the tasks, start the policy, then make the run store (a model that cannot start
    leaves no run directory behind)."""
    from ..core.loading import load

    env_spec = canonical_spec(env) if isinstance(env, str) else env.name
    concurrency = 32 if rc.concurrency is None else rc.concurrency
    env_obj = load(env, rc.env_args) if isinstance(env, str) else env
    source = getattr(env_obj, "loaded_from", None)
    split = "test" if rc.split is None else rc.split
    samples = 1 if rc.samples is None else rc.samples
    seed = 0 if rc.seed is None else rc.seed
    ts = seed if rc.task_seed is None else rc.task_seed
    cal = str(Path(rc.calibration).resolve()) if rc.calibration is not None else None
    if cal is not None and split == CALIBRATED and CALIBRATED not in env_obj.splits:
        ts = load_calibrated_split(cal).task_seed
    limit = rc.limit
    tasks = list(_select(env_obj, split, limit, ts, task_ids=rc.task_ids, calibration=cal))
    if not tasks:
        raise UsageError(f"no tasks to run: {env_obj.name} split {split!r} gives none"
                         + (f" (--limit {limit})" if limit is not None else ""))
    if limit is not None and rc.task_ids is None and len(tasks) < limit:
        short = (f"--limit {limit} asks for more tasks than {env_obj.name} split {split!r} has "
                 f"({len(tasks):,})")
        if rc.strict_limit:
            raise UsageError(f"{short}; give --limit {len(tasks)} or leave --limit out to run them all")
        import warnings

        warnings.warn(f"{short}; running {len(tasks):,}", UserWarning, stacklevel=4)
    try:
        cfg = RolloutConfig(samples=samples, concurrency=concurrency, seed=seed,
                            timeout_s=rc.timeout_s, max_turns=rc.max_turns)
    except ValueError as e:
        raise UsageError(str(e)) from None
    split_concurrency(concurrency, rc.workers)  # before anything is written
    policy = _policy_from(model, model_options.resolve_kwargs())
    blob = _check_backend(env_obj, source, tasks, policy, rc)
    manifest = RunManifest(
        env=env_obj.name, env_version=env_obj.version, env_spec=env_spec, env_args=rc.env_args or {},
        split=split,
        limit=limit, task_ids=[t.id for t in tasks], samples=samples, seed=seed,
        task_seed=ts, policy=policy.describe(), concurrency=concurrency,
        timeout_s=rc.timeout_s, max_turns=rc.max_turns, package_version=__version__,
        started_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        python=platform.python_version(), sample_offset=rc.sample_offset, calibration=cal,
        env_package=env_package(source[0]) if source else None,
    )
    RunStore.check_new(out)
    try:  # the model first: one that cannot start (a bad model file) leaves no run directory behind
        await policy.start()
        store = RunStore.create(out, manifest)
    except BaseException:
        with contextlib.suppress(Exception):  # the start's or the store's own error is the one to report
            await asyncio.shield(policy.close())
        raise
    return _Plan(store, env_obj, tasks, policy, cfg, {}, source, blob, rc.workers, resumed=False, backend=rc.backend)


def _check_backend(env: Environment, source: Any, tasks: Sequence[Task], policy: Policy, rc: RunConfig) -> bytes | None:
    """What running the rollouts elsewhere needs, refused (or the Ray cluster connected) before
    anything is written; the pickled tasks, or None for one process."""
    if rc.backend == "ray":
        blob = check_workers(env, source, tasks, policy, need="--backend ray")
        connect_ray(rc.ray_address)
        return blob
    return check_workers(env, source, tasks, policy) if rc.workers > 1 else None



async def _execute(plan: _Plan, progress: Progress | None, max_errors: MaxErrors) -> Run:
    """Run what the plan has left, recording as rollouts finish, and write the summary."""
    store, env_obj, tasks, policy, cfg, done = plan.store, plan.env, plan.tasks, plan.policy, plan.cfg, plan.done
    total = len(tasks) * cfg.samples
    if progress is not None:
        progress.start(total, len(done))

    tally = Summary()  # kept up to date as records arrive: no pass over them at the end
    for r in done.values():
        tally.add(r)

    def on_record(rec: dict[str, Any]) -> None:
        store.append(rec)
        tally.add(rec)
        if progress is not None:
            progress.advance(rec)

    def on_line(line: bytes, lt: dict[str, Any]) -> None:  # a record from a worker process
        store.append_line(line)
        tally.add(lt)
        if progress is not None:
            progress.advance(lt)

    async def flusher() -> None:  # bounds how long a finished record waits in the buffer
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            store.flush()

    flush_task = asyncio.ensure_future(flusher())
    failing = False  # an error is on its way out: a second one while closing must not replace it
    died: str | None = None  # what became of a dead model server (read before the policy is closed)
    try:
        try:
            if plan.resumed:  # a new run started its policy before it made the run directory
                await policy.start()
            offset = store.manifest.sample_offset
            if plan.backend == "ray":
                await run_ray(plan.source, (env_obj.name, env_obj.version), tasks, policy, cfg, on_line, light_record,
                              workers=plan.workers if plan.workers > 1 else None, offset=offset, done=done,
                              tasks_blob=plan.blob)
            elif plan.workers > 1:
                assert plan.source is not None
                await run_pool(plan.source, (env_obj.name, env_obj.version), tasks, policy, cfg, plan.workers, on_line,
                               light_record, offset=offset, done=done, tasks_blob=plan.blob)
            else:
                await run_all(env_obj, iter_jobs(tasks, cfg.samples, done, offset=offset), policy, cfg, on_record,
                              total - len(done))
        except BaseException as e:
            failing = True
            if isinstance(e, ModelServerDied | WorkerError):
                died = _postmortem(policy, store.path)
            raise
        finally:
            flush_task.cancel()
            try:
                await asyncio.shield(policy.close())
            finally:
                try:
                    store.close()
                    summary = tally.result(samples=cfg.samples)
                    summary["complete"] = summary["n_trajectories"] == total
                    store.write_summary(summary)
                except OSError:
                    if not failing:
                        raise
            # (a full disk that failed a record's write usually fails the summary's too: the first is reported)
    except OSError as e:
        _raise_write_error(e, store.path)
    except (ModelServerDied, WorkerError) as e:
        if died is None:
            raise
        raise ModelServerDied(f"{died}\nthe rollouts stored before are kept; after fixing the server, continue "
                              f"with: envfoundry run --out {shlex.quote(str(store.path))} --resume") from e
    finally:
        if progress is not None:  # whatever happened: the terminal gets its cursor back
            progress.stop()
    return Run(store.path, store.manifest, summary, max_errors=max_errors)




def _postmortem(policy: Policy, run_dir: Path) -> str | None:
    """A dead model server's exit status and log tail, its logs copied into ``run_dir/server-logs``
    (for policies that own servers: :class:`~envfoundry.policies.embedded.LocalPolicy`)."""
    postmortem = getattr(policy, "postmortem", None)
    if postmortem is None:
        return None
    try:
        text: str | None = postmortem(run_dir / "server-logs")
    except Exception:  # noqa: BLE001 - the run's own error is the one to report
        return None
    return text


def _raise_write_error(e: OSError, run_dir: Path) -> NoReturn:
    """Raise a failed write into the run directory (a full disk) as a RunWriteError saying what to
    do; any other OSError as it is. Call it in the ``except`` clause that caught ``e``."""
    name = str(e.filename or "")
    if not name or not Path(name).resolve().is_relative_to(run_dir.resolve()):
        raise  # ``e`` itself, which the caller is handling
    fix = "make room" if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else "fix that"
    raise RunWriteError(f"cannot write {name}: {e.strerror or type(e).__name__}; the rollouts stored before are "
                        f"kept: {fix} and continue with --resume") from e


@functools.wraps(evaluate_async, assigned=("__doc__", "__annotations__"))
def evaluate(env: Environment | str, **kwargs: Any) -> Run:
    """Synchronous :func:`evaluate_async`; it takes the same options (``help(envfoundry.evaluate)`` lists them)."""
    return asyncio.run(evaluate_async(env, **kwargs))


evaluate.__signature__ = inspect.signature(evaluate_async)  # type: ignore[attr-defined]
