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

from ..core.env import Environment
from ..core.errors import UsageError
from ..core.files import atomic_write_text, ensure_dir
from ..core.outcome import Outcome
from ..core.record import check_schema_version
from ..core.task import Task
from .config import (  # noqa: F401 - re-exported: the configuration's home was this module
    CONFIG_FILE,
    TrainConfig,
    _comparable,
    _differences,
    absolute_model,
    stored_config,
)
from .model import check_device, check_train_installed, resolve_model_source

TASKS_FILE = "train_tasks.txt"
LOG_FILE = "train_log.jsonl"


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
    taken = _take(source, cfg.eval_tasks)
    ids = [t.id for t in taken if t.id not in train_ids]
    if len(ids) < cfg.eval_tasks:
        import warnings

        overlap = f", {len(taken) - len(ids)} of them training tasks," if len(ids) < len(taken) else ""
        warnings.warn(f"--eval-limit {cfg.eval_tasks}: {env.name} split {cfg.eval_split!r} has {len(taken):,} "
                      f"tasks{overlap} so {len(ids):,} held-out tasks are evaluated", UserWarning, stacklevel=2)
    return ids


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
