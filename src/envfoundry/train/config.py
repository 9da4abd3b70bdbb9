"""A training run's configuration: the typed :class:`TrainConfig`, the one place it is built from
what a caller gives (the CLI and Python alike), and the resume rule that compares it with a stored one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import UsageError, reason
from ..core.loading import canonical_spec
from ..core.resume import differences

CONFIG_FILE = "train_config.json"


class TrainConfig(BaseModel):
    """Everything that defines a training run (recorded in ``train_config.json``)."""

    model_config = ConfigDict(extra="forbid")

    env: str = Field(description="environment spec: built-in name, file.py:factory or pkg.mod:factory")
    env_args: dict[str, str] = Field(default_factory=dict, description="keyword arguments to the env factory")
    model: str = Field("local", description="local (the embedded GGUF; smollm2 is its old name), PATH.gguf or a "
                       "model directory")
    steps: int = Field(30, ge=1, description="optimizer steps")
    group_size: int = Field(4, ge=2, description="completions per task (TRL num_generations)")
    batch: int = Field(8, ge=2, description="completions per step, a multiple of group_size")
    lr: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                             description="learning rate (default 1e-5 full, 1e-4 LoRA)")
    lora: bool = Field(False, description="train LoRA adapters instead of all weights")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of tasks, episodes and trainer (numpy's range)")
    max_completion_tokens: int = Field(256, ge=1, description="tokens per completion (whole episode)")
    max_turn_tokens: int | None = Field(None, ge=1, description="tokens per model turn (multi-turn)")
    temperature: float = Field(1.0, gt=0, le=100, allow_inf_nan=False,
                               description="sampling temperature while training")
    beta: float = Field(0.0, ge=0, le=1000, allow_inf_nan=False, description="KL coefficient (0: no reference model)")
    train_split: str = "train"
    train_tasks: int | None = Field(None, ge=1, description="training tasks (default: enough for every step)")
    calibration: str | None = Field(None, description="an `envfoundry calibrate` output: train on its tasks")
    eval_split: str = "test"
    eval_tasks: int = Field(300, ge=0, description="held-out tasks evaluated before and after (0: none)")
    eval_batch: int = Field(32, ge=1, description="sequences generated together when evaluating")
    save_every: int = Field(10, ge=1, description="checkpoint every N steps")
    save_model: bool = Field(True, description="save the trained model to OUT/model")
    device: str | None = Field(None, description="cpu, cuda or mps (default: cuda when available)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.batch % self.group_size:
            raise ValueError(f"--batch ({self.batch}) must be a multiple of --samples, the group size "
                             f"({self.group_size})")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.lora else 1e-5)


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    """What must match to resume: everything but ``steps`` and ``device`` (a checkpoint continues on
    any device); the calibration as an absolute path (a run may have stored it relative to the
    directory it was started from)."""
    d = cfg.model_dump(exclude={"steps", "device"})
    d["lr"] = cfg.learning_rate  # the effective rate: no --lr and --lr equal to the default are the same
    d["env"] = canonical_spec(d["env"])  # a config stored before paths were made absolute matches too
    d["model"] = absolute_model(d["model"])
    if d["calibration"]:
        d["calibration"] = str(Path(d["calibration"]).resolve())
    return d


def absolute_model(model: str) -> str:
    """A model given as a path (a GGUF file or a model folder) as an absolute path; a name as it is."""
    return str(Path(model).resolve()) if model not in ("smollm2", "local") and Path(model).exists() else model


#: the CLI option of each configuration field whose name does not say it
_OPTION = {"env": "ENV", "env_args": "--env-arg/--levels", "train_split": "train_split", "train_tasks": "train_tasks",
           "eval_split": "eval_split", "eval_batch": "eval_batch", "save_model": "save_model", "lora": "",
           "group_size": "--samples", "eval_tasks": "--eval-limit", "max_turn_tokens": "--max-tokens"}


def _differences(stored: TrainConfig, given: TrainConfig) -> list[str]:
    """One phrase per option that differs between a stored and a given configuration
    (:func:`envfoundry.core.resume.differences`, the rule run, audit and calibrate follow too)."""

    def show(k: str, v: Any) -> str:
        if k == "lora":
            return "--lora" if v else "--full"
        return ("none" if k == "calibration" else "default") if v is None else str(v)

    return differences(_comparable(stored), _comparable(given), what="the stored", names=_OPTION, show=show,
                       none_is_unset=False)


def stored_config(out: Path, resume: bool) -> TrainConfig | None:
    """The configuration recorded in ``out`` when resuming it (None: start a new training there).
    Raises :class:`UsageError` for a folder that cannot be started (not empty) or resumed (missing,
    or without a readable ``train_config.json``); writes nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {str(out)!r} exists and is not a directory")
    path = out / CONFIG_FILE
    empty = not out.exists() or not any(out.iterdir())
    if not resume:
        if not empty:
            hint = "pass --resume to continue it" if path.is_file() else "choose another --out"
            raise UsageError(f"output folder {str(out)!r} is not empty; {hint}")
        return None
    if not out.exists():
        raise UsageError(f"{str(out)!r} does not exist, so there is no training to resume; drop --resume")
    if not path.is_file():
        if empty:  # created, then stopped before anything was written: start there
            return None
        raise UsageError(f"{str(out)!r} holds no training to resume (no {CONFIG_FILE}); choose another --out")
    try:
        return TrainConfig.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot read {str(path)!r} (damaged?): {reason(e)}") from None


def build_config(*, env: str, env_args: Mapping[str, str] | None = None, options: Mapping[str, Any] | None = None,
                 stored: TrainConfig | None = None, calibration: str | Path | None = None,
                 device: str | None = None) -> TrainConfig:
    """The configuration of a training, built the same way from the CLI and from Python.

    ``options`` are :class:`TrainConfig` fields (None: not given); a resumed training (``stored``)
    keeps its stored values for every option not given (:func:`envfoundry.train.train` then refuses
    any given one that differs, naming it). A model given as a path is stored absolute, so a resume
    works from any folder. A bad value is a :class:`UsageError` naming the option as the CLI spells it.
    """
    given = {k: v for k, v in (options or {}).items() if v is not None}
    if "model" in given:
        given["model"] = absolute_model(given["model"])
    base = stored.model_dump(exclude={"device"}) if stored is not None else {}
    try:
        return TrainConfig(**{
            **base, **given, "env": canonical_spec(env), "env_args": dict(env_args or {}), "device": device,
            "calibration": str(Path(calibration).resolve()) if calibration is not None else None,
        })
    except ValidationError as e:
        first = e.errors()[0]
        field = "_".join(map(str, first["loc"]))
        where = (_OPTION.get(field) or "--" + field.replace("_", "-")) if first["loc"] else "options"
        got = f", got {first.get('input')!r}" if first["loc"] else ""
        raise UsageError(f"bad {where}: {first['msg'].removeprefix('Value error, ')}{got}") from None
