"""Which tasks a run uses: a split's first ``limit`` tasks, optionally narrowed to given ids, or the
tasks listed in a calibrated split file.

A calibrated split (``calibrated_split.json``, written by ``envfoundry calibrate``) names an
environment, its version, the source split and task seed, and the ids of the tasks that were in
the difficulty band for one model. ``envfoundry run ENV --split calibrated --calibration DIR``
runs exactly those tasks; the file is checked against the environment, so a changed environment
is reported instead of silently running other tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..core.env import Environment
from ..core.errors import UsageError, reason
from ..core.task import Task

CALIBRATED = "calibrated"
CALIBRATED_SPLIT_FILE = "calibrated_split.json"
FORMAT = "envfoundry.calibrated_split/1"


class CalibratedSplit(BaseModel):
    """The content of ``calibrated_split.json``."""

    format: str = FORMAT
    env: str = Field(description="environment name")
    env_version: str
    env_args: dict[str, str] | None = Field(
        None, description="the environment factory's arguments (None: not recorded by older versions)")
    source_split: str = Field(description="the split the tasks come from")
    task_seed: int = Field(description="seed of the procedural task source")
    source_limit: int | None = Field(description="the tasks are among the source split's first N")
    task_ids: list[str] = Field(description="the selected tasks, in order")
    model: str = Field("", description="the policy spec the tasks were calibrated for")
    band: tuple[float, float] | None = Field(None, description="the pass-rate band the tasks are in")
    rule: str = Field("", description="how the tasks were chosen")
    info: dict[str, Any] = Field(default_factory=dict)


def calibrated_split_path(calibration: str | Path) -> Path:
    """The split file of a calibrate output directory (or the file itself)."""
    p = Path(calibration)
    return p / CALIBRATED_SPLIT_FILE if p.is_dir() else p


def calibrations_dir(env_name: str) -> Path:
    """Where ``envfoundry calibrate`` makes a new ``calibration-TIME`` folder unless told otherwise:
    ``quality/<env>`` (next to the audits)."""
    return Path("quality") / env_name


def default_calibration_dir(env_name: str) -> Path:
    """Where ``envfoundry train`` looks for a calibrated split: the newest
    ``quality/<env>/calibration-TIME`` that holds one (the folder name sorts by time), else the
    ``quality/<env>/calibration`` of older versions."""
    base = calibrations_dir(env_name)
    found = sorted((p for p in base.glob("calibration-*") if (p / CALIBRATED_SPLIT_FILE).is_file()),
                   key=lambda p: (p.name[:len("calibration-YYYYmmdd-HHMMSS")], p.stat().st_mtime))
    return found[-1] if found else base / "calibration"


def find_calibration(env: Environment, env_args: dict[str, str] | None = None,
                     where: str | Path | None = None, *, eval_split: str | None = None) -> tuple[Path | None, str]:
    """The calibration to use by default: ``(directory, why)``, or ``(None, why not)``.

    ``where`` defaults to :func:`default_calibration_dir`; it is used only when its split file is
    of this environment, version and factory arguments, lists at least one task, and its tasks do
    not come from ``eval_split`` (training on tasks of the split it is evaluated on would bias
    the held-out evaluation, even with the trained tasks left out of it).
    """
    d = Path(where) if where is not None else default_calibration_dir(env.name)
    p = d if d.is_file() else d / CALIBRATED_SPLIT_FILE
    if not p.is_file():
        return None, f"no calibrated split at {str(p)!r}"
    try:
        cal = load_calibrated_split(p)
    except UsageError as e:
        return None, str(e)
    if (cal.env, cal.env_version) != (env.name, env.version):
        return None, f"{str(p)!r} is of {cal.env} {cal.env_version}, not {env.name} {env.version}"
    if cal.env_args is None:
        return None, f"{str(p)!r} does not record its env args (calibrated by an older envfoundry); calibrate again"
    if cal.env_args != dict(env_args or {}):
        return None, f"{str(p)!r} was calibrated with env args {cal.env_args}, not {dict(env_args or {})}"
    if eval_split is not None and cal.source_split == eval_split:
        return None, (f"{str(p)!r} holds tasks of the {eval_split!r} split, which is evaluated on; "
                      "calibrate with --split train to train on it")
    if not cal.task_ids:
        return None, f"{str(p)!r} lists no task in the band"
    return d, f"{len(cal.task_ids)} tasks calibrated for {cal.model or 'a model'} in {str(p)!r}"


def load_calibrated_split(calibration: str | Path) -> CalibratedSplit:
    """Read a calibrated split; UsageError with the reason when it is missing or malformed."""
    p = calibrated_split_path(calibration)
    if not p.is_file():
        raise UsageError(f"no calibrated split at {str(p)!r}; run `envfoundry calibrate` with --out there first")
    try:
        return CalibratedSplit.model_validate_json(p.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, OSError) as e:
        raise UsageError(f"cannot read calibrated split {str(p)!r}: {reason(e)}") from None


def select_tasks(
    env: Environment,
    split: str,
    *,
    limit: int | None,
    task_seed: int,
    task_ids: Sequence[str] | None = None,
    calibration: str | Path | None = None,
) -> list[Task]:
    """The tasks of a run, in order.

    ``split == "calibrated"`` (and no such split in ``env``) takes the tasks listed in the
    calibrated split file ``calibration`` (its own task seed wins over ``task_seed``). Then
    ``limit`` keeps the first N; ``task_ids`` narrows the selection to those ids, in their order.
    """
    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    use_file = split == CALIBRATED and CALIBRATED not in env.splits
    if calibration is not None and not use_file:
        raise UsageError("--calibration only applies with --split calibrated")
    if use_file:
        if calibration is None:
            raise UsageError("--split calibrated needs --calibration DIR (an `envfoundry calibrate` output)")
        tasks = _calibrated_tasks(env, load_calibrated_split(calibration))
        if not tasks:
            raise UsageError(f"the calibrated split in {str(calibration)!r} is empty: no task was in the band")
    else:
        try:
            source = env.tasks(split, seed=task_seed)
        except KeyError as e:
            raise UsageError(str(e.args[0]) if e.args else str(e)) from None
        tasks = list(source[: len(source) if limit is None else min(limit, len(source))])
        limit = None
    if limit is not None:
        tasks = tasks[:limit]
    if task_ids is not None:
        by_id = {t.id: t for t in tasks}
        unknown = [t for t in task_ids if t not in by_id]
        if unknown:
            raise UsageError(
                f"{len(unknown)} task id(s) are not among the selected tasks of {env.name!r} split "
                f"{split!r} (e.g. {unknown[0]!r})"
            )
        tasks = [by_id[t] for t in task_ids]
    return tasks


def _calibrated_tasks(env: Environment, cal: CalibratedSplit) -> list[Task]:
    if (cal.env, cal.env_version) != (env.name, env.version):
        raise UsageError(
            f"the calibrated split is of {cal.env} {cal.env_version}, not {env.name} {env.version}; "
            "calibrate again for this environment"
        )
    try:
        source = env.tasks(cal.source_split, seed=cal.task_seed)
    except KeyError as e:
        raise UsageError(str(e.args[0]) if e.args else str(e)) from None
    n = len(source) if cal.source_limit is None else min(cal.source_limit, len(source))
    by_id = {t.id: t for t in source[:n]}
    missing = [t for t in cal.task_ids if t not in by_id]
    if missing:
        raise UsageError(
            f"{len(missing)} task id(s) of the calibrated split are no longer generated by {env.name} "
            f"(e.g. {missing[0]!r}); the environment changed, calibrate again"
        )
    return [by_id[t] for t in cal.task_ids]
