"""``list``, ``run``, ``show`` and ``export``: running environments and reading runs."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import UsageError
from ._common import (
    EnvArg,
    EnvArgOpt,
    EnvOpt,
    _env_args,
    _env_spec,
    _escape,
    app,
    check_model_options,
    console,
    err,
    note_workers,
)


@app.command("list")
def list_cmd() -> None:
    """List the built-in environments."""
    from rich.table import Table

    from ..envs import BUILTIN, load

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
                     "(default: scripted:oracle, or the resumed run's)"),
    ] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API root (…/v1)")] = None,  # noqa: UP007
    slots: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="llama.cpp server processes for --model local (default: one per core, at most 4; "
        "1 for local:PATH.gguf)")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="env variable holding the API key")] = None,  # noqa: UP007
    temperature: Annotated[Optional[float], typer.Option(help="sampling temperature")] = None,  # noqa: UP007
    top_p: Annotated[Optional[float], typer.Option(help="nucleus sampling")] = None,  # noqa: UP007
    max_tokens: Annotated[Optional[int], typer.Option(help="tokens per model turn")] = None,  # noqa: UP007
    model_seed: Annotated[Optional[int], typer.Option(help="fixed sampling seed (default: per rollout)")] = None,  # noqa: UP007
    tool_mode: Annotated[Optional[str], typer.Option(  # noqa: UP007
        help="auto, native or text tool calling (default: auto, or the resumed run's)")] = None,
    split: Annotated[
        Optional[str], typer.Option(help="task split (`calibrated`: the in-band tasks of --calibration; default: test)")
    ] = None,
    calibration: Annotated[
        Optional[Path], typer.Option(help="an `envfoundry calibrate` output, for --split calibrated")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="first N tasks of the split")] = None,  # noqa: UP007
    samples: Annotated[Optional[int], typer.Option(help="rollouts per task, a GRPO group (default: 1)")] = None,
    concurrency: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="rollouts in flight at once (default: 32, or the resumed run's)")] = None,
    workers: Annotated[
        int, typer.Option(help="processes sharing the rollouts (for fast model servers: one process's CPU is the "
                          "limit); concurrency is split among them")
    ] = 1,
    seed: Annotated[Optional[int], typer.Option(help="run seed, tasks and rollouts (default: 0)")] = None,
    task_seed: Annotated[int | None, typer.Option(help="task source seed (default: --seed)")] = None,  # noqa: UP007
    timeout: Annotated[float | None, typer.Option(help="seconds per rollout")] = None,  # noqa: UP007
    max_turns: Annotated[int | None, typer.Option(help="lower the env's turn limit")] = None,  # noqa: UP007
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/ENV-TIME)")] = None,  # noqa: UP007
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Run tasks x samples rollouts of ENV with a policy and store them."""
    from ..display import RichProgress, summary_table
    from ..rollout.run import evaluate

    stored_run = None
    if resume:
        if out is None:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        from ..rollout.store import RunStore

        stored_run = RunStore.open(out).manifest
        if env is None and env_opt is None:  # the stored run knows its environment
            env = stored_run.env_spec
    spec = _env_spec(env, env_opt)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    check_model_options(tool_mode, temperature, top_p, max_tokens)
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = Path(spec.split(":")[0]).stem if ":" in spec else spec
        out = Path("runs") / f"{name}-{stamp}"
    if stored_run is not None:  # the stored run decides; options that would change it are refused, not ignored
        m = stored_run
        given = {"--samples": (samples, m.samples), "--seed": (seed, m.seed), "--limit": (limit, m.limit),
                 "--task-seed": (task_seed, m.task_seed), "--timeout": (timeout, m.timeout_s),
                 "--max-turns": (max_turns, m.max_turns), "--split": (split, m.split)}
        for name, (v, stored) in given.items():
            if v is not None and v != stored:
                raise UsageError(f"{name} {v} differs from the run in {str(out)!r} ({stored}); resume without it "
                                 "or choose another --out")
        model = model or str(m.policy.get("spec", "scripted:oracle"))
    model = model or "scripted:oracle"
    split = split or "test"
    samples = 1 if samples is None else samples
    seed = 0 if seed is None else seed
    note_workers(workers, concurrency)
    progress = None if quiet else RichProgress(console)
    run = evaluate(
        spec, model=model, out=out, split=split, limit=limit, samples=samples,
        concurrency=concurrency, seed=seed, task_seed=task_seed, timeout_s=timeout,
        max_turns=max_turns, resume=resume, progress=progress, env_args=_env_args(env_arg),
        calibration=calibration, workers=workers,
        model_options={
            "base_url": base_url, "api_key_env": api_key_env, "tool_mode": tool_mode,
            "sampling": {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": model_seed},
            **({"slots": slots} if slots is not None else {}),
        },
    )
    console.print(summary_table(run.summary, title=f"{run.manifest.env} - {model}"))
    console.print(f"run stored in [bold]{_escape(str(run.path))}[/bold]")


@app.command("show")
def show_cmd(
    run: Annotated[Path, typer.Argument(help="run directory")],
    failed: Annotated[bool, typer.Option("--failed", help="only failed or errored rollouts")] = False,
    task: Annotated[str | None, typer.Option("--task", help="show this task's rollouts in full")] = None,  # noqa: UP007
    limit: Annotated[int, typer.Option(help="rows in the table")] = 50,
) -> None:
    """Show a run's summary and trajectories."""
    from ..display import records_table, summary_table, trajectory_panel
    from ..rollout.run import Run
    from ..rollout.summary import summarize

    if limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    r = Run.open(run)
    recs = list(r.records())
    m = r.manifest
    planned = len(m.task_ids) * m.samples
    summary = summarize(recs, samples=m.samples)  # from the records themselves, not a stale summary.json
    if len(recs) < planned:
        err.print(f"[yellow]note:[/yellow] {len(recs)} of {planned} rollouts are stored; continue with "
                  f"`envfoundry run {_escape(m.env_spec)} --out {_escape(str(run))} --resume`")
    if failed:
        recs = [x for x in recs if x["outcome"] not in ("completed", "truncated") or not x["passed"]]
    if task is not None:
        recs = [x for x in recs if x["task_id"] == task]
        if not recs:
            raise UsageError(f"run {str(run)!r} has no trajectory of task {task!r}")
        for x in sorted(recs, key=lambda x: x["sample"]):
            console.print(trajectory_panel(x))
        return
    console.print(summary_table(summary, title=f"{m.env} - {m.policy.get('spec')}"))
    console.print(records_table(recs, limit=limit))


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="run directory")],
    out: Annotated[Path, typer.Argument(help="output file")],
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="parquet, jsonl, or a trainer's layout: trl, hf, verl (default: by suffix)"),
    ] = None,
) -> None:
    """Export a run's trajectories (Parquet loads with `datasets`; trl/hf/verl: .jsonl or Parquet by OUT's suffix)."""
    from ..rollout.export import export_run

    n = export_run(run, fmt or ("jsonl" if out.suffix == ".jsonl" else "parquet"), out)
    console.print(f"wrote {n} rows to {_escape(str(out))}")

