"""``train``: GRPO training on an environment (needs the ``train`` extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..core.errors import UsageError
from . import vocabulary as V
from ._common import EnvArg, EnvArgOpt, EnvOpt, _env_args, _env_spec, _escape, app, console, err


@app.command("train")
def train_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    model: Annotated[Optional[str], V._opt(
        "--model", "local (the embedded SmolLM2), local:PATH.gguf, PATH.gguf or a local HF model folder "
        "(default: local)")] = None,
    steps: Annotated[Optional[int], V._opt("--steps", "optimizer steps (default: 30)")] = None,
    samples: Annotated[Optional[int], V._opt("--samples", "completions per task, a GRPO group (default: 4)",
                                             rng=V.Range(2, V.MAX_SAMPLES, why="rollouts per task"))] = None,
    batch: Annotated[Optional[int], V._opt("--batch", "completions per step (a multiple of --samples) (default: 8)")
                     ] = None,
    lr: Annotated[Optional[float], V._opt("--lr", "learning rate (default 1e-5, LoRA 1e-4)")] = None,
    lora: Annotated[Optional[bool], typer.Option(
        "--lora/--full", metavar="", help="LoRA adapters or all weights (default: full)")] = None,
    seed: Annotated[Optional[int], V._opt("--seed", "seed: tasks, episodes, trainer (default: 0)",
                                          rng=V.Range(0, 2**32 - 1, why="numpy's seed range"))] = None,
    out: Annotated[Optional[Path], V._opt("--out", "output folder (default: a new runs/train-ENV-TIME)")] = None,
    resume: V.Resume = False,
    force: V.Force = False,
    max_completion_tokens: Annotated[Optional[int], V._opt(
        "--max-completion-tokens", "tokens per completion (whole episode) (default: 256)")] = None,
    max_tokens: Annotated[Optional[int], V._opt("--max-tokens", "tokens per model turn (multi-turn)")] = None,
    temperature: Annotated[Optional[float], V._opt(
        "--temperature", "sampling temperature while training (default: 1.0)", rng=V.Range(0, 100, open_lo=True))
    ] = None,
    beta: Annotated[Optional[float], V._opt("--beta", "KL coefficient (0: no reference model) (default: 0.0)")
                    ] = None,
    eval_limit: Annotated[Optional[int], V._opt(
        "--eval-limit", "held-out test tasks evaluated before and after (0: none; default: 300)")] = None,
    levels: Annotated[Optional[str], typer.Option(help="difficulty levels, e.g. 1,2 (= --env-arg levels=...)")] = None,
    env_arg: EnvArgOpt = None,
    calibration: Annotated[
        Optional[Path],
        typer.Option(help="train on a calibrate output's in-band tasks (default: the newest "
                     "quality/ENV/calibration-* that fits)"),
    ] = None,
    no_calibration: Annotated[bool, typer.Option("--no-calibration", metavar="",
                                                 help="train on the train split")] = False,
    save_every: Annotated[Optional[int], V._opt("--save-every", "checkpoint every N steps (default: 10)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda[:N] or mps (default: cuda when available)")] = None,
    threads: V.Threads = None,
    quiet: V.Quiet = False,
    group_size_old: Annotated[Optional[int], V.hidden("--group-size")] = None,
    eval_tasks_old: Annotated[Optional[int], V.hidden("--eval-tasks")] = None,
    max_turn_tokens_old: Annotated[Optional[int], V.hidden("--max-turn-tokens")] = None,
) -> None:
    """GRPO-train a model on ENV with TRL; evaluate on held-out tasks before and after; write a report.

    --resume continues with the stored options; --steps may grow and --device change, others must match."""
    import os

    # Spinning OpenMP threads slow torch down many times over when other processes share the cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..train.config import build_config, stored_config
    from ..train.model import check_device, check_train_installed
    from ..train.run import train

    options = dict(
        model=_model_name(model), steps=steps, batch=batch, lr=lr, lora=lora, seed=seed, beta=beta,
        group_size=V.renamed(samples, group_size_old, "--group-size", "--samples"),
        eval_tasks=V.renamed(eval_limit, eval_tasks_old, "--eval-tasks", "--eval-limit"),
        max_turn_tokens=V.renamed(max_tokens, max_turn_tokens_old, "--max-turn-tokens", "--max-tokens"),
        max_completion_tokens=max_completion_tokens, temperature=temperature, save_every=save_every)
    if resume and out is None:
        raise UsageError("--resume needs --out DIR (the training to continue)")
    if calibration is not None and no_calibration:
        raise UsageError("give --calibration DIR or --no-calibration, not both")
    stored = stored_config(out, resume) if resume and out is not None else None
    spec = stored.env if stored is not None and env is None and env_opt is None else _env_spec(env, env_opt)
    check_train_installed()
    args = _env_args(env_arg)
    if levels is not None:
        args["levels"] = levels
    if stored is not None and env_arg is None and levels is None:
        args = dict(stored.env_args)
    check_device(device)  # train() checks all again; these before looking for a calibration
    from .output import default_out, env_stem, prepare_out

    out = out if out is not None else default_out("runs", f"train-{env_stem(spec)}")
    prepare_out(out, command="train", resume=resume, force=force, spec=spec)
    if not resume:
        stored_config(out, resume)  # a non-empty --out is refused before anything else
    if not no_calibration and calibration is None:
        calibration = _stored_or_found_calibration(stored, spec, args, quiet)
    cfg = build_config(env=spec, env_args=args, options=options, stored=stored, calibration=calibration,
                       device=device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from ..display import RichProgress

    result = train(cfg, out, resume=resume, on_step=None if quiet else _print_step(cfg.steps),
                   progress=None if quiet else (lambda name: RichProgress(console)))
    _print_result(result)


def _model_name(model: str | None) -> str | None:
    if model == "smollm2":
        err.print("note: --model smollm2 is now --model local; the old name goes away in the next release")
        return "local"
    return model


def _stored_or_found_calibration(stored: Any, spec: str, args: dict[str, str], quiet: bool) -> Path | None:
    """A resumed training's calibration, else the newest calibrate output that fits (said on the console)."""
    if stored is not None:
        return Path(stored.calibration) if stored.calibration else None
    from ..core.loading import load
    from ..rollout.selection import find_calibration
    from ..train.config import TrainConfig

    found, why = find_calibration(load(spec, args), args, eval_split=TrainConfig.model_fields["eval_split"].default)
    if found is not None:
        console.print(f"training on the calibrated split: {_escape(why)} (--no-calibration for the train split)")
    elif not quiet:
        console.print(f"training on the train split ({_escape(why)})")
    return found


def _print_step(steps: int) -> Callable[[dict[str, Any]], None]:
    def on_step(row: dict[str, Any]) -> None:
        zero = row.get("frac_reward_zero_std")
        console.print(
            f"step {row['step']}/{steps}  reward {row['reward']:.3f} ± {row.get('reward_std') or 0:.3f}  "
            f"zero-variance groups {'-' if zero is None else f'{100 * zero:.0f}%'}  "
            f"masked {int(row.get('envfoundry/masked') or 0)}  ({row.get('step_time', 0):.1f} s)"
        )

    return on_step


def _print_result(result: Any) -> None:
    if result.before is not None and result.after is not None:
        from ..train.report import eval_row, verdict

        b, a = eval_row(result.before), eval_row(result.after)
        for name, r in (("before", b), ("after", a)):
            rate = "-" if r["pass_rate"] is None else f"{100 * r['pass_rate']:.1f}%"
            console.print(f"{name:6s} pass {rate} " + _escape(f"[{100 * r['ci95'][0]:.1f}%, {100 * r['ci95'][1]:.1f}%]")
                          + f" on {r['scored']} held-out tasks ({r['errors']} errors)")
        console.print(verdict(b, a))
    from ..core.outcome import Outcome

    masked = sum(result.totals.get(o, 0) for o in Outcome.CODE_ERRORS)
    console.print(f"{result.totals.get('scored', 0)} completions rewarded, {masked} masked as errors; "
                  f"report in [bold]{_escape(str(result.out))}[/bold]")
