"""The ``envfoundry`` command line: parses, calls the library, prints.

Exit codes: 0 ok, 1 a check or audit found problems, 2 bad usage or bad input, 130 interrupted
(after the run store has been flushed).
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .core.errors import EnvfoundryError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build, run, verify and share RL environments for LLM agents.",
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
err = Console(stderr=True)

EnvArg = Annotated[
    str | None,  # noqa: UP007 - typer needs Optional
    typer.Argument(help="built-in name (see `envfoundry list`), file.py:factory or pkg.mod:attr"),
]
EnvOpt = Annotated[
    str | None,  # noqa: UP007
    typer.Option("--env", help="environment as path/to/file.py:factory (same as ENV)"),
]


EnvArgOpt = Annotated[
    Optional[list[str]],
    typer.Option("--env-arg", help="KEY=VALUE passed to the environment factory (repeatable)"),
]


def _env_args(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items or []:
        key, sep, value = it.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--env-arg expects KEY=VALUE, got {it!r}")
        out[key.strip()] = value
    return out


def _env_spec(env: str | None, env_opt: str | None) -> str:
    if env and env_opt and env != env_opt:
        raise UsageError(f"give the environment once: ENV={env!r} and --env={env_opt!r}")
    spec = env or env_opt
    if not spec:
        raise UsageError("no environment given: pass ENV or --env path/to/file.py:factory")
    return spec


@app.command("list")
def list_cmd() -> None:
    """List the built-in environments."""
    from rich.table import Table

    from .envs import BUILTIN, load

    t = Table(title="environments", title_justify="left")
    for c in ("name", "version", "splits (tasks)", "tools", "description"):
        t.add_column(c)
    for name in BUILTIN:
        env = load(name)
        splits = ", ".join(f"{s} ({len(env.tasks(s)):,})" for s in env.splits)
        t.add_row(name, env.version, splits, str(len(env.tools)), env.description)
    console.print(t)


@app.command("run")
def run_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    model: Annotated[
        Optional[str],
        typer.Option(help="scripted:oracle|noop|random, local, local:PATH.gguf, openai:NAME "
                     "[default: scripted:oracle, or the resumed run's]"),
    ] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API root (…/v1)")] = None,  # noqa: UP007
    api_key_env: Annotated[Optional[str], typer.Option(help="env variable holding the API key")] = None,  # noqa: UP007
    temperature: Annotated[Optional[float], typer.Option(help="sampling temperature")] = None,  # noqa: UP007
    top_p: Annotated[Optional[float], typer.Option(help="nucleus sampling")] = None,  # noqa: UP007
    max_tokens: Annotated[Optional[int], typer.Option(help="tokens per model turn")] = None,  # noqa: UP007
    model_seed: Annotated[Optional[int], typer.Option(help="fixed sampling seed (default: per rollout)")] = None,  # noqa: UP007
    tool_mode: Annotated[str, typer.Option(help="auto, native or text tool calling")] = "auto",
    split: Annotated[str, typer.Option(help="task split (`calibrated`: the in-band tasks of --calibration)")] = "test",
    calibration: Annotated[
        Optional[Path], typer.Option(help="an `envfoundry calibrate` output, for --split calibrated")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="first N tasks of the split")] = None,  # noqa: UP007
    samples: Annotated[int, typer.Option(help="rollouts per task (a GRPO group)")] = 1,
    concurrency: Annotated[int, typer.Option(help="rollouts in flight at once")] = 32,
    seed: Annotated[int, typer.Option(help="run seed (tasks and rollouts)")] = 0,
    task_seed: Annotated[int | None, typer.Option(help="task source seed (default: --seed)")] = None,  # noqa: UP007
    timeout: Annotated[float | None, typer.Option(help="seconds per rollout")] = None,  # noqa: UP007
    max_turns: Annotated[int | None, typer.Option(help="lower the env's turn limit")] = None,  # noqa: UP007
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/ENV-TIME)")] = None,  # noqa: UP007
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Run tasks x samples rollouts of ENV with a policy and store them."""
    from .display import RichProgress, summary_table
    from .rollout.run import evaluate

    spec = _env_spec(env, env_opt)
    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    if resume and out is None:
        raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = Path(spec.split(":")[0]).stem if ":" in spec else spec
        out = Path("runs") / f"{name}-{stamp}"
    if model is None:
        model = "scripted:oracle"
        if resume:
            from .rollout.store import RunStore

            model = str(RunStore.open(out).manifest.policy.get("spec", model))
    progress = None if quiet else RichProgress(console)
    run = evaluate(
        spec, model=model, out=out, split=split, limit=limit, samples=samples,
        concurrency=concurrency, seed=seed, task_seed=task_seed, timeout_s=timeout,
        max_turns=max_turns, resume=resume, progress=progress, env_args=_env_args(env_arg),
        calibration=calibration,
        model_options={
            "base_url": base_url, "api_key_env": api_key_env, "tool_mode": tool_mode,
            "sampling": {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": model_seed},
        },
    )
    console.print(summary_table(run.summary, title=f"{run.manifest.env} - {model}"))
    console.print(f"run stored in [bold]{run.path}[/bold]")


@app.command("check")
def check_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    tasks: Annotated[int, typer.Option(help="tasks to sample")] = 20,
    samples: Annotated[int, typer.Option(help="scripted rollouts per task")] = 2,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    split: Annotated[Optional[str], typer.Option(help="split to sample (default test)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable report on stdout")] = False,
) -> None:
    """Conformance checks for any environment; exit 1 if a check fails."""
    import json

    from rich.table import Table

    from .envs import load
    from .quality.check import CheckConfig, check_env

    spec = _env_spec(env, env_opt)
    if tasks < 1 or samples < 1:
        raise UsageError("--tasks and --samples must be >= 1")
    e = load(spec, _env_args(env_arg))
    if split is not None and split not in e.splits:
        raise UsageError(f"environment {e.name!r} has no split {split!r} (splits: {', '.join(e.splits)})")
    report = check_env(e, spec=spec, config=CheckConfig(tasks=tasks, samples=samples, seed=seed, split=split))
    if json_out:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        t = Table(title=f"check {e.name} {e.version}", title_justify="left")
        for c in ("check", "result", "detail"):
            t.add_column(c)
        style = {"pass": "green", "fail": "bold red", "skipped": "yellow"}
        for r in report.results:
            detail = r.detail + (f"\ntask {r.task_id}" if r.task_id else "")
            if r.example is not None:
                detail += "\nexample: " + json.dumps(r.example, default=str)[:600]
            t.add_row(r.name, f"[{style[r.status]}]{r.status}", _escape(detail))
        console.print(t)
    if not report.ok:
        raise typer.Exit(1)


@app.command("audit")
def audit_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    tasks: Annotated[int, typer.Option(help="tasks to probe")] = 30,
    samples: Annotated[int, typer.Option(help="rollouts per task and probe")] = 2,
    seed: Annotated[int, typer.Option(help="seed (tasks, rollouts, mutations)")] = 0,
    split: Annotated[Optional[str], typer.Option(help="split to sample (default test)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="results directory (default quality/ENV)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the audit stored in --out")] = False,
    probes: Annotated[Optional[str], typer.Option(help="comma-separated probes to run (default all)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable report on stdout")] = False,
) -> None:
    """Probe ENV for reward hacking and mutation-test its grader; exit 1 if anything is found."""
    import json

    from .envs import load
    from .quality.audit import AUDIT_FILE, AuditConfig, audit_env, render_report

    spec = _env_spec(env, env_opt)
    if tasks < 1 or samples < 1:
        raise UsageError("--tasks and --samples must be >= 1")
    names = [p.strip() for p in probes.split(",") if p.strip()] if probes is not None else None
    if names is not None and not names:
        raise UsageError("--probes needs at least one probe name")
    e = load(spec, _env_args(env_arg))
    cfg = AuditConfig(tasks=tasks, samples=samples, seed=seed, split=split, probes=names, out=out, resume=resume)
    report = audit_env(e, spec=spec, config=cfg)
    if json_out:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for part in render_report(report):
            console.print(part)
        verdict = "[green]no findings" if report.ok else f"[bold red]{len(report.findings)} finding(s)"
        console.print(f"{verdict}[/]; stored in [bold]{report.out / AUDIT_FILE}[/bold]")
    if not report.ok:
        raise typer.Exit(1)


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


@app.command("show")
def show_cmd(
    run: Annotated[Path, typer.Argument(help="run directory")],
    failed: Annotated[bool, typer.Option("--failed", help="only failed or errored rollouts")] = False,
    task: Annotated[str | None, typer.Option("--task", help="show this task's rollouts in full")] = None,  # noqa: UP007
    limit: Annotated[int, typer.Option(help="rows in the table")] = 50,
) -> None:
    """Show a run's summary and trajectories."""
    from .display import records_table, summary_table, trajectory_panel
    from .rollout.run import Run

    r = Run.open(run)
    recs = list(r.records())
    if failed:
        recs = [x for x in recs if x["outcome"] not in ("completed", "truncated") or not x["passed"]]
    if task is not None:
        recs = [x for x in recs if x["task_id"] == task]
        if not recs:
            raise UsageError(f"run {str(run)!r} has no trajectory of task {task!r}")
        for x in sorted(recs, key=lambda x: x["sample"]):
            console.print(trajectory_panel(x))
        return
    console.print(summary_table(r.summary, title=f"{r.manifest.env} - {r.manifest.policy.get('spec')}"))
    console.print(records_table(recs, limit=limit))


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="run directory")],
    out: Annotated[Path, typer.Argument(help="output file")],
    fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl, or a trainer's layout: trl, hf, verl")] = (
        "parquet"
    ),
) -> None:
    """Export a run's trajectories (Parquet loads with `datasets`; trl/hf/verl: .jsonl or Parquet by OUT's suffix)."""
    from .rollout.export import export_run

    n = export_run(run, fmt, out)
    console.print(f"wrote {n} rows to {out}")


@app.command("calibrate")
def calibrate_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    model: Annotated[Optional[str], typer.Option(help="policy spec as for run [on --resume: the stored one]")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API root (…/v1)")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="env variable holding the API key")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="sampling temperature")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="nucleus sampling")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="tokens per model turn")] = None,
    tool_mode: Annotated[str, typer.Option(help="auto, native or text tool calling")] = "auto",
    split: Annotated[Optional[str], typer.Option(help="task split [default: test]")] = None,
    limit: Annotated[Optional[int], typer.Option(help="first N tasks of the split")] = None,
    samples: Annotated[Optional[int], typer.Option(help="initial samples per task (GRPO group) [default: 8]")] = None,
    budget: Annotated[Optional[int], typer.Option(help="total rollouts [default: 2 x tasks x samples]")] = None,
    band: Annotated[Optional[str], typer.Option(help="useful pass rates LO,HI [default: 0.02,0.98]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="run seed [default: 0]")] = None,
    task_seed: Annotated[Optional[int], typer.Option(help="task source seed (default: --seed)")] = None,
    concurrency: Annotated[int, typer.Option(help="rollouts in flight at once")] = 32,
    timeout: Annotated[Optional[float], typer.Option(help="seconds per rollout")] = None,
    max_turns: Annotated[Optional[int], typer.Option(help="lower the env's turn limit")] = None,
    knobs: Annotated[bool, typer.Option("--knobs", help="pass rate by difficulty knob (table, knobs.png)")] = False,
    out: Annotated[Optional[Path], typer.Option(help="output directory (default runs/calib-ENV-TIME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the calibration in --out")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Measure each task's pass rate for a model, adaptively, and keep the tasks in the band."""
    from pydantic import ValidationError

    from .quality.calibrate import CalibrateConfig, calibrate, parse_band

    spec = _env_spec(env, env_opt)
    if resume and out is None:
        raise UsageError("--resume needs --out DIR (the calibration to continue)")
    if model is None and not resume:
        raise UsageError("calibrate needs --model (e.g. --model local)")
    for name, v in (("--limit", limit), ("--samples", samples), ("--budget", budget)):
        if v is not None and v < (0 if name == "--limit" else 1):
            raise UsageError(f"{name} must be >= {0 if name == '--limit' else 1}, got {v}")
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"calib-{Path(spec.split(':')[0]).stem if ':' in spec else spec}-{stamp}"
    try:
        config = CalibrateConfig(
            split=split, limit=limit, samples=samples, budget=budget, band=parse_band(band) if band else None,
            seed=seed, task_seed=task_seed, concurrency=concurrency, timeout_s=timeout, max_turns=max_turns,
            knobs=knobs,
        )
    except ValidationError as e:  # e.g. --concurrency 0
        first = e.errors()[0]
        name = {"timeout_s": "timeout"}.get(str(first["loc"][0]), str(first["loc"][0])).replace("_", "-")
        raise UsageError(f"--{name}: {first['msg']}, got {first.get('input')!r}") from None

    def on_round(rnd, resumed: bool) -> None:  # noqa: ANN001
        what = "finishing" if resumed else "running"
        console.print(f"{what} round {rnd.number}: {len(rnd.task_ids)} tasks x {rnd.samples} samples "
                      f"(samples {rnd.offset}-{rnd.offset + rnd.samples - 1})")

    result = calibrate(
        spec, model=model, out=out, config=config, resume=resume, progress=None if quiet else _FreshProgress(),
        on_round=on_round, env_args=_env_args(env_arg) if env_arg else None,
        model_options={
            "base_url": base_url, "api_key_env": api_key_env, "tool_mode": tool_mode,
            "sampling": {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens},
        },
    )
    _print_calibration(result)


class _FreshProgress:
    """A new progress bar per round."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, total: int, done: int) -> None:
        from .display import RichProgress

        self._bar = RichProgress(console)
        self._bar.start(total, done)

    def advance(self, record: dict) -> None:
        if self._bar is not None:
            self._bar.advance(record)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_calibration(result) -> None:  # noqa: ANN001
    from rich.table import Table

    s = result.summary
    t = Table(title=f"calibration - {s['env']} {s['env_version']} - {s['model']}", title_justify="left")
    for c in ("verdict", "tasks", "share"):
        t.add_column(c)
    for v, d in s["verdicts"].items():
        t.add_row(v, str(d["tasks"]), f"{d['share']:.1%}")
    console.print(t)
    zv = s["zero_variance"]

    def share(d: dict) -> str:
        return "-" if d["share"] is None else f"{d['share']:.1%} of {d['groups']}"

    info = Table(show_header=False)
    info.add_column(style="bold")
    info.add_column()
    lo, hi = s["band"]
    info.add_row("band", f"[{lo:g}, {hi:g}]  (95% Wilson interval per task)")
    info.add_row("rollouts", f"{s['budget_used']} of budget {s['budget']} in {len(s['rounds'])} round(s); "
                 f"{s['scored_samples']} scored, {s['errors']} errors")
    fmt = "  ".join
    info.add_row("pass@k", fmt(f"@{k}={v:.3f}" for k, v in s["pass_at_k"].items() if v is not None) or "-")
    info.add_row("pass^k", fmt(f"@{k}={v:.3f}" for k, v in s["pass_hat_k"].items() if v is not None) or "-")
    info.add_row(f"zero-variance groups (K={s['samples']})",
                 f"before {share(zv['before'])}; in-band {share(zv['after_in_band'])}; "
                 f"keep {share(zv['after_keep'])}")
    info.add_row("keep / drop", f"{s['keep']} / {s['drop']}  (lo <= p_hat <= hi)")
    info.add_row("calibrated split", f"{s['calibrated_split']} in-band tasks")
    console.print(info)
    for knob, entries in result.knobs.items():
        kt = Table(title=f"pass rate by {knob}", title_justify="left")
        for c in ("value", "tasks", "samples", "pass rate", "95% CI"):
            kt.add_column(c)
        for e in entries:
            rate = "-" if e["pass_rate"] is None else f"{e['pass_rate']:.3f}"
            kt.add_row(str(e["value"]), str(e["tasks"]), str(e["samples"]), rate,
                       f"{e['ci_lo']:.3f}-{e['ci_hi']:.3f}")
        console.print(kt)
    if result.plot_hint:
        err.print(f"[yellow]plots skipped:[/yellow] matplotlib is not installed; install it with: {result.plot_hint}")
    console.print(f"calibration stored in [bold]{result.out}[/bold]; run the in-band tasks with "
                  f"`envfoundry run {s['env_spec']} --split calibrated --calibration {result.out}`")


@app.command("train")
def train_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    model: Annotated[str, typer.Option(help="smollm2 (embedded GGUF), PATH.gguf or a local HF model dir")] = "smollm2",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 30,
    group_size: Annotated[int, typer.Option(help="completions per task, a GRPO group")] = 4,
    batch: Annotated[int, typer.Option(help="completions per step (a multiple of --group-size)")] = 8,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (default 1e-5, LoRA 1e-4)")] = None,
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA adapters or all weights")] = False,
    seed: Annotated[int, typer.Option(help="seed (tasks, episodes, trainer)")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default runs/train-ENV-TIME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the training in --out")] = False,
    max_completion_tokens: Annotated[int, typer.Option(help="tokens per completion (whole episode)")] = 256,
    max_turn_tokens: Annotated[Optional[int], typer.Option(help="tokens per model turn (multi-turn)")] = None,
    temperature: Annotated[float, typer.Option(help="sampling temperature while training")] = 1.0,
    beta: Annotated[float, typer.Option(help="KL coefficient (0: no reference model)")] = 0.0,
    eval_tasks: Annotated[int, typer.Option(help="held-out test tasks evaluated before and after")] = 300,
    levels: Annotated[Optional[str], typer.Option(help="difficulty levels, e.g. 1,2 (= --env-arg levels=...)")] = None,
    env_arg: EnvArgOpt = None,
    calibration: Annotated[Optional[Path], typer.Option(help="train on a calibrate output's tasks")] = None,
    save_every: Annotated[int, typer.Option(help="checkpoint every N steps")] = 10,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available)")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: all cores)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """GRPO-train a model on ENV with TRL; evaluate on held-out tasks before and after; write a report."""
    import os

    # Spinning OpenMP threads slow torch down many times over when other processes share the cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pydantic import ValidationError

    from .train.model import check_train_installed
    from .train.run import TrainConfig, train

    spec = _env_spec(env, env_opt)
    check_train_installed()
    args = _env_args(env_arg)
    if levels is not None:
        args["levels"] = levels
    if resume and out is None:
        raise UsageError("--resume needs --out DIR (the training to continue)")
    if out is None:
        name = Path(spec.split(":")[0]).stem if ":" in spec else spec
        out = Path("runs") / f"train-{name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        cfg = TrainConfig(
            env=spec, env_args=args, model=model, steps=steps, group_size=group_size, batch=batch, lr=lr,
            lora=lora, seed=seed, max_completion_tokens=max_completion_tokens, max_turn_tokens=max_turn_tokens,
            temperature=temperature, beta=beta, eval_tasks=eval_tasks, save_every=save_every, device=device,
            calibration=str(calibration) if calibration is not None else None,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise UsageError(f"bad option {'.'.join(map(str, first['loc'])) or ''}: {first['msg']}") from None

    def on_step(row: dict) -> None:
        if not quiet:
            zero = row.get("frac_reward_zero_std")
            console.print(
                f"step {row['step']}/{steps}  reward {row['reward']:.3f} ± {row.get('reward_std') or 0:.3f}  "
                f"zero-variance groups {'-' if zero is None else f'{100 * zero:.0f}%'}  "
                f"masked {int(row.get('envfoundry/masked') or 0)}  ({row.get('step_time', 0):.1f} s)"
            )

    from .display import RichProgress

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    result = train(cfg, out, resume=resume, on_step=on_step,
                   progress=None if quiet else (lambda name: RichProgress(console)))
    if result.before is not None and result.after is not None:
        from .train.report import eval_row, verdict

        b, a = eval_row(result.before), eval_row(result.after)
        for name, r in (("before", b), ("after", a)):
            rate = "-" if r["pass_rate"] is None else f"{100 * r['pass_rate']:.1f}%"
            console.print(f"{name:6s} pass {rate} [{100 * r['ci95'][0]:.1f}%, {100 * r['ci95'][1]:.1f}%] "
                          f"on {r['scored']} held-out tasks ({r['errors']} errors)")
        console.print(verdict(b, a))
    masked = result.totals.get("env_error", 0) + result.totals.get("grader_error", 0)
    console.print(f"{result.totals.get('scored', 0)} completions rewarded, {masked} masked as errors; "
                  f"report in [bold]{result.out}[/bold]")


@app.command("agree")
def agree_cmd(
    labels: Annotated[str, typer.Option(help="labels JSONL (id, label, annotator) or a built-in env name")],
    scores: Annotated[Optional[Path], typer.Option(help="grader scores JSONL (id, score|passed|label)")] = None,
    run: Annotated[Optional[Path], typer.Option(help="a run directory: its stored scores")] = None,
    judge: Annotated[Optional[str], typer.Option(help="run ENV's rubric judge over the items")] = None,
    model: Annotated[Optional[str], typer.Option(help="the judge's model: local, openai:NAME")] = None,
    items: Annotated[Optional[Path], typer.Option(help="transcripts JSONL (default: items.jsonl by labels)")] = None,
    reference: Annotated[Optional[str], typer.Option(help="reference annotator (default: gold, ground_truth, "
                                                     "else the majority)")] = None,
    scale: Annotated[Optional[str], typer.Option(help="binary, ordinal, continuous (default: detected)")] = None,
    threshold: Annotated[float, typer.Option(help="score >= threshold passes, when a score has no label")] = 0.5,
    repeats: Annotated[int, typer.Option(help="judgements per item (self-consistency)")] = 2,
    adversarial: Annotated[int, typer.Option(help="known-bad items to probe with each adversarial text")] = 6,
    pairs: Annotated[int, typer.Option(help="better/worse pairs judged in both orders")] = 4,
    limit: Annotated[Optional[int], typer.Option(help="judge only the first N items")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="judge temperature (0; 0.7 with repeats)")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API root of the judge")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="env variable holding the judge's API key")] = None,
    boot: Annotated[int, typer.Option(help="bootstrap resamples")] = 1000,
    seed: Annotated[int, typer.Option(help="seed (bootstrap, judge, probe choice)")] = 0,
    save: Annotated[Optional[Path], typer.Option(help="write the judge's scores here (reuse with --scores)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable report on stdout")] = False,
) -> None:
    """Agreement of a grader with labels: accuracy, kappa, alpha, correlations, probes, with 95% CIs."""
    import json

    from .grading import agree as ag

    if sum(x is not None for x in (scores, run, judge)) != 1:
        raise UsageError("give exactly one of --scores FILE, --run RUN_DIR or --judge ENV --model MODEL")
    lab_path = ag.shipped_labels(labels)
    lab = ag.load_labels(lab_path)
    if scores is not None:
        sc = ag.load_scores(scores)
    elif run is not None:
        sc = ag.scores_from_run(run)
    else:
        if not model:
            raise UsageError("--judge needs --model (e.g. --model local)")
        its = ag.load_jsonl(items or lab_path.with_name("items.jsonl"))[: limit]
        j = ag.resolve_judge(judge or "", model, base_url=base_url, api_key_env=api_key_env)
        j.temperature = temperature if temperature is not None else (0.7 if repeats > 1 else 0.0)
        ref, _ = ag.reference_labels(lab, scale or ag.detect_scale(r["label"] for r in lab), reference)
        from rich.progress import Progress

        with Progress(console=console, disable=json_out) as bar:
            task = bar.add_task(f"judging with {model}", total=None)
            sc = ag.run_judge(j, its, reference=ref, repeats=repeats, adversarial=adversarial, pairs=pairs,
                              seed=seed, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
        if save is not None:
            save.write_text("".join(json.dumps(r) + "\n" for r in sc))
    rep = ag.compare(lab, sc, scale=scale, threshold=threshold, reference=reference, n_boot=boot, seed=seed)
    if json_out:
        print(json.dumps(rep.to_dict(), indent=2))
        return
    for t in ag.report_tables(rep, title=f"agree {judge or scores or run}"):
        console.print(t)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/yellow] {_escape(w)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; maps errors to exit codes instead of tracebacks."""
    try:
        app(args=argv, standalone_mode=True)  # typer formats usage errors and exits 2
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130:  # typer turns KeyboardInterrupt into exit code 130
            err.print("interrupted; the run store was flushed (continue with --resume)")
        return code
    except KeyboardInterrupt:
        err.print("interrupted; the run store was flushed (continue with --resume)")
        return 130
    except UsageError as e:
        err.print(f"[red]error:[/red] {e}")
        return 2
    except EnvfoundryError as e:  # e.g. the local model server failed to start
        err.print(f"[red]error:[/red] {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _entry() -> None:
    sys.exit(main())
