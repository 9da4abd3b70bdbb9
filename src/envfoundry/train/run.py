"""``train``: evaluate, train with TRL's GRPOTrainer, evaluate again, and write the evidence.

An output directory holds ``train_config.json``, ``train_tasks.txt`` (the training task ids, checked
on resume), ``eval_before/`` and ``eval_after/`` (ordinary
run stores of the held-out evaluation), ``checkpoints/`` (TRL's, for ``resume``),
``train_log.jsonl`` (one line per step: reward mean and std, share of zero-variance groups, masked
errors, score breakdown, loss), ``model/`` (the trained model, a plain Hugging Face directory),
``reward_curve.png``, ``report.md`` and ``results.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.env import Environment
from ..core.errors import UsageError, reason
from ..core.files import atomic_write_text, ensure_dir
from ..core.loading import canonical_spec
from ..core.outcome import Outcome
from ..core.record import check_schema_version
from ..core.resume import differences
from ..core.task import Task
from .model import check_device, check_train_installed, resolve_model_source

CONFIG_FILE = "train_config.json"
TASKS_FILE = "train_tasks.txt"
LOG_FILE = "train_log.jsonl"


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


@dataclass
class TrainResult:
    out: Path
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    log: list[dict[str, Any]]
    totals: dict[str, int]
    report: Path | None


def _take(source: Sequence[Task], n: int) -> list[Task]:
    """The first ``n`` tasks, or fewer when a procedural source runs out of distinct problems."""
    out: list[Task] = []
    for i in range(min(n, len(source))):
        try:
            out.append(source[i])
        except RuntimeError:
            break
    return out


def training_tasks(env: Environment, cfg: TrainConfig) -> list[Task]:
    """The calibrated split's tasks when ``cfg.calibration`` is set, else the train split's first N."""
    if cfg.calibration is not None:
        from ..rollout.selection import select_tasks

        return select_tasks(env, "calibrated", limit=cfg.train_tasks, task_seed=cfg.seed,
                            calibration=cfg.calibration)
    try:
        source = env.tasks(cfg.train_split, seed=cfg.seed)
    except KeyError as e:
        raise UsageError(str(e.args[0]) if e.args else str(e)) from None
    return _take(source, cfg.train_tasks or max(1, cfg.steps * cfg.batch // cfg.group_size))


def _eval_task_ids(env: Environment, cfg: TrainConfig, train_ids: set[str]) -> list[str]:
    try:
        source = env.tasks(cfg.eval_split, seed=cfg.seed)
    except KeyError as e:
        raise UsageError(str(e.args[0]) if e.args else str(e)) from None
    return [t.id for t in _take(source, cfg.eval_tasks) if t.id not in train_ids]


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


def _check_task_ids(path: Path, ids: list[str], resume: bool) -> None:
    """On resume the training tasks must be the recorded ones (more steps may add tasks at the
    end). Catches a calibration redone in place since the training started."""
    if resume and path.is_file():
        stored = path.read_text(encoding="utf-8").split()
        n = min(len(stored), len(ids))
        if stored[:n] != ids[:n]:
            raise UsageError(f"the training tasks differ from those recorded in {str(path)!r} (was the calibration "
                             "redone?); resume with the same tasks or start a new --out")


def _read_log(path: Path, upto: int | None) -> list[dict[str, Any]]:
    """The logged steps up to ``upto``; a line torn by a kill is dropped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and (upto is None or row["step"] <= upto):
            rows.append(row)
    return rows


def _last_checkpoint(ckpt: Path) -> int | None:
    """The step of the newest complete checkpoint (its trainer_state.json, written last, readable)."""
    steps = []
    for p in ckpt.glob("checkpoint-*"):
        step = p.name.split("-", 1)[1]
        try:
            complete = step.isdigit() and isinstance(json.loads((p / "trainer_state.json").read_text("utf-8")), dict)
        except (OSError, ValueError):
            complete = False
        if complete:
            steps.append(int(step))
    return max(steps) if steps else None


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    env: Environment | None = None,
    model: Any = None,
    tokenizer: Any = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[str], Any] | None = None,
) -> TrainResult:
    """Run the whole recipe into ``out``; ``env``/``model``+``tokenizer`` override the config's specs
    (the config still names them in the report). ``on_step`` receives each step's log row;
    ``progress(name)`` makes a rollout-engine progress reporter for each evaluation."""
    check_train_installed()
    outp = Path(out)
    # Everything that can be refused is checked before anything is written: the stored
    # configuration only ever holds values that work, and the same command with --resume continues.
    stored = stored_config(outp, resume)
    if stored is not None and _comparable(stored) != _comparable(cfg):
        raise UsageError(f"{str(outp)!r} was started with other options: {'; '.join(_differences(stored, cfg))}; "
                         "resume with the same options (only --steps may grow, --device may change) "
                         "or choose another --out")
    check_device(cfg.device)
    ckpt = outp / "checkpoints"
    last = _last_checkpoint(ckpt) if resume else None
    if last is not None and cfg.steps < last:
        raise UsageError(f"--steps {cfg.steps} is fewer than the {last} steps already trained in {str(outp)!r}; "
                         f"give --steps {last} or more")
    if model is None or tokenizer is None:
        resolve_model_source(cfg.model)  # a missing model file or folder, before the environment loads
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL 1.16
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    from ..core.loading import load
    from .model import load_model
    from .trl_adapter import EnvAdapter, is_multi_turn

    env_obj = env if env is not None else load(cfg.env, cfg.env_args)
    tasks = training_tasks(env_obj, cfg)
    if not tasks:
        raise UsageError(f"environment {env_obj.name!r} gave no training tasks")
    task_ids = [t.id for t in tasks]
    _check_task_ids(outp / TASKS_FILE, task_ids, resume)
    eval_ids = _eval_task_ids(env_obj, cfg, set(task_ids)) if cfg.eval_tasks else []
    if model is None or tokenizer is None:
        model, tokenizer = load_model(cfg.model, device=cfg.device)
    ensure_dir(outp, "output folder")
    atomic_write_text(outp / CONFIG_FILE, cfg.model_dump_json(indent=2))
    atomic_write_text(outp / TASKS_FILE, "".join(f"{i}\n" for i in task_ids))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = str(next(model.parameters()).device.type)
    timings["load_s"] = time.perf_counter() - t0

    multi = is_multi_turn(env_obj)
    turn_tokens = cfg.max_turn_tokens or (min(cfg.max_completion_tokens, 256) if multi else cfg.max_completion_tokens)

    def evaluate_into(name: str, spec: str) -> dict[str, Any] | None:
        if not eval_ids:
            return None
        t = time.perf_counter()
        summary = _evaluate(outp / name, spec, env if env is not None else cfg.env, cfg, eval_ids, model,
                            tokenizer, turn_tokens, progress(name) if progress else None,
                            env_args=cfg.env_args if env is None else None)
        timings[f"{name}_s"] = time.perf_counter() - t
        return summary

    before = evaluate_into("eval_before", f"transformers:{cfg.model}")

    log = _read_log(outp / LOG_FILE, last) if last is not None else []  # no checkpoint: training starts over
    atomic_write_text(outp / LOG_FILE, "".join(json.dumps(r) + "\n" for r in log))

    adapter = EnvAdapter(env_obj, tasks, group_size=cfg.group_size, seed=cfg.seed, max_turn_tokens=turn_tokens)
    for r in log:
        for k in sorted(Outcome.CODE_ERRORS):
            adapter.totals[k] += int(r.get(f"envfoundry/{k}") or 0)
        adapter.totals["scored"] += cfg.batch - int(r.get("envfoundry/masked") or 0)
    t = time.perf_counter()
    with warnings.catch_warnings():  # TRL's config sets a field transformers 5 calls deprecated
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)
        trainer = _make_trainer(cfg, adapter, model, tokenizer, ckpt, device, log, outp / LOG_FILE, on_step)
        # from a checkpoint at the last step this only restores the weights
        trainer.train(resume_from_checkpoint=str(ckpt / f"checkpoint-{last}") if last is not None else None)
    timings["train_s"] = time.perf_counter() - t
    model = trainer.model

    after = evaluate_into("eval_after", f"transformers:{cfg.model}+grpo{cfg.steps}")
    if cfg.save_model:
        from .model import save_model

        save_model(model, tokenizer, outp / "model")
    timings["total_s"] = time.perf_counter() - t0

    from .report import plot_reward_curve, write_report

    totals = {k: int(v) for k, v in adapter.totals.items() if k in Outcome.CODE_ERRORS}
    totals["scored"] = int(sum(v for k, v in adapter.totals.items() if k not in Outcome.CODE_ERRORS))
    plot_reward_curve(log, outp / "reward_curve.png")
    report = None
    if before is not None and after is not None:
        conf = {**cfg.model_dump(exclude_none=True), "learning_rate": cfg.learning_rate, "device": device,
                "eval_decoding": "greedy", "eval_tasks": len(eval_ids)}
        report = write_report(outp, config=conf, before=before, after=after, log=log, totals=totals,
                              timings=timings)
    return TrainResult(outp, before, after, log, totals, report)


def _evaluate(d: Path, spec: str, env: Environment | str, cfg: TrainConfig, task_ids: list[str], model: Any,
              tokenizer: Any, turn_tokens: int, progress: Any, *, env_args: dict[str, str] | None) -> dict[str, Any]:
    """Greedy held-out evaluation through the rollout engine into the run store ``d`` (reused when
    complete and of the same policy, resumed when partial)."""
    from ..rollout.run import evaluate_async
    from .policy import TransformersPolicy

    if (d / "manifest.json").is_file():
        stored = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        check_schema_version(stored.get("schema_version"), d)  # never removed nor misread
        if stored.get("policy", {}).get("spec") != spec:  # e.g. trained for fewer steps: stale
            shutil.rmtree(d)
        elif (d / "summary.json").is_file():
            summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
            if summary.get("complete"):
                return dict(summary)
    pol = TransformersPolicy(model, tokenizer, spec=spec, max_new_tokens=turn_tokens, batch_size=cfg.eval_batch,
                             seed=cfg.seed)
    run = asyncio.run(evaluate_async(
        env, model=pol, out=d, split=cfg.eval_split, limit=cfg.eval_tasks, task_ids=task_ids, seed=cfg.seed,
        concurrency=2 * cfg.eval_batch, resume=(d / "manifest.json").is_file(), env_args=env_args,
        progress=progress,
    ))
    return run.summary


def _make_trainer(cfg: TrainConfig, adapter: Any, model: Any, tokenizer: Any, ckpt: Path, device: str,
                  log: list[dict[str, Any]], log_path: Path, on_step: Any) -> Any:
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class _Log(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            if not logs or "reward" not in logs:
                return
            row = {"step": int(state.global_step), "completions": cfg.batch, **logs}
            log.append(row)
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if on_step is not None:
                on_step(row)

    cuda = device == "cuda"
    args = GRPOConfig(
        output_dir=str(ckpt), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch,
        num_generations=cfg.group_size, learning_rate=cfg.learning_rate, beta=cfg.beta,
        max_completion_length=cfg.max_completion_tokens, temperature=cfg.temperature, seed=cfg.seed,
        data_seed=cfg.seed, logging_steps=1, save_steps=cfg.save_every, save_total_limit=1,
        report_to="none", use_cpu=device == "cpu", bf16=cuda and torch.cuda.is_bf16_supported(), fp16=False,
        gradient_checkpointing=False, disable_tqdm=True, remove_unused_columns=False,
        dataloader_num_workers=0, log_completions=False,
    )
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        model=model, reward_funcs=adapter.reward_funcs(), args=args, train_dataset=adapter.dataset(),
        processing_class=tokenizer, rollout_func=adapter.rollout_func(), peft_config=peft_config,
        callbacks=[_Log()],
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):  # they print every log dict; on_step reports instead
        trainer.remove_callback(cb)
    return trainer
