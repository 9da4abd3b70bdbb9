"""``list``, ``run``, ``show`` and ``export``: running environments and reading runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import UsageError
from ..core.outcome import Outcome
from . import vocabulary as V
from ._common import (
    EnvArg,
    EnvArgOpt,
    EnvOpt,
    _env_args,
    _env_spec,
    _escape,
    app,
    console,
    err,
    note_workers,
)


@app.command("list")
def list_cmd() -> None:
    """List the environments known by name: envfoundry's own and those installed packages declare."""
    from rich.markup import escape
    from rich.table import Table

    from ..core.errors import EnvfoundryError
    from ..core.loading import load
    from ..core.registry import REGISTRY

    t = Table(title="environments", title_justify="left")
    for c in ("name", "version", "splits (tasks)", "tools", "description", "from"):
        t.add_column(c, overflow="fold")
    for entry in REGISTRY.entries():
        try:  # one broken package must not hide the others
            env = load(entry.name)
            splits = ", ".join(f"{s} ({len(env.tasks(s)):,})" for s in env.splits)
        except EnvfoundryError as e:
            t.add_row(entry.name, "", "", "", f"[red]cannot load: {escape(str(e))}[/red]", escape(entry.source))
            continue
        t.add_row(entry.name, env.version, splits, str(len(env.tools)), escape(env.description), escape(entry.source))
    console.print(t)
    for problem in REGISTRY.problems():
        err.print(f"[yellow]warning:[/yellow] {escape(problem)}", soft_wrap=True)


@app.command("run")
def run_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    model: V.Model = None,
    base_url: V.BaseUrl = None,
    slots: V.Slots = None,
    api_key_env: V.ApiKeyEnv = None,
    temperature: V.Temperature = None,
    top_p: V.TopP = None,
    max_tokens: V.MaxTokens = None,
    model_seed: V.ModelSeed = None,
    tool_mode: V.ToolMode = None,
    split: Annotated[Optional[str], typer.Option(  # noqa: UP007
        help="task split (`calibrated`: the in-band tasks of --calibration; default: test)")] = None,
    calibration: Annotated[
        Optional[Path], typer.Option(help="an `envfoundry calibrate` output, for --split calibrated")  # noqa: UP007
    ] = None,
    limit: V.Limit = None,
    samples: V.Samples = None,
    concurrency: V.Concurrency = None,
    workers: V.Workers = 1,
    backend: V.Backend = "local",
    ray_address: V.RayAddress = None,
    seed: V.Seed = None,
    task_seed: V.TaskSeed = None,
    timeout: V.Timeout = None,
    max_turns: V.MaxTurns = None,
    max_errors: V.MaxErrors = None,
    out: V.Out = None,
    resume: V.Resume = False,
    force: V.Force = False,
    quiet: V.Quiet = False,
) -> None:
    """Run tasks x samples rollouts of ENV with a model and store them (--model is required; on --resume the
    stored one). Exit 1 when more rollouts end in errors than --max-errors allows (default: none)."""
    from ..display import RichProgress, summary_table
    from ..rollout.config import ModelOptions, RunConfig
    from ..rollout.run import evaluate, parse_max_errors
    from .output import default_out, env_stem, prepare_out

    stored_run = None
    if resume:
        if out is None:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        from ..rollout.store import RunStore

        stored_run = RunStore.open(out).manifest
        if env is None and env_opt is None:  # the stored run knows its environment
            env = stored_run.env_spec
    spec = _env_spec(env, env_opt)
    tolerance = parse_max_errors(max_errors) if max_errors is not None else 0
    # the run's two typed configurations, built once: the library validates them the same way for every caller
    config = RunConfig.of(None, dict(
        split=split, limit=limit, samples=samples, concurrency=concurrency, seed=seed, task_seed=task_seed,
        timeout_s=timeout, max_turns=max_turns, env_args=_env_args(env_arg) or None, calibration=calibration,
        workers=workers, backend=backend, ray_address=ray_address, max_errors=tolerance, strict_limit=True))
    model_options = ModelOptions.of(dict(base_url=base_url, api_key_env=api_key_env, tool_mode=tool_mode,
                                         temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                         seed=model_seed, slots=slots))
    if stored_run is None and model is None:
        raise UsageError("run needs --model: local (the embedded SmolLM2), local:PATH.gguf, openai:NAME with "
                         "--base-url, or scripted:oracle|noop|random (scripted:oracle follows the reference "
                         "solution: a check of the environment, not of a model)")
    if out is None:
        out = default_out("runs", env_stem(spec))
    prepare_out(out, command="run", resume=resume, force=force, spec=spec)
    if stored_run is not None:  # the stored run decides: evaluate refuses an option given with another value
        model = model or str(stored_run.policy.get("spec", "scripted:oracle"))
    assert model is not None
    note_workers(workers if backend == "local" else 1, concurrency)
    if not quiet:
        err.print(f"{'continuing' if resume else 'writing'} the run in [bold]{_escape(str(out))}[/bold]",
                  soft_wrap=True)
    progress = None if quiet else RichProgress(err)
    run = evaluate(spec, model=model, out=out, config=config, model_options=model_options, resume=resume,
                   progress=progress)
    console.print(summary_table(run.summary, title=f"{run.manifest.env} - {model}"))
    console.print(f"run stored in [bold]{_escape(str(run.path))}[/bold]")
    if run.failure is not None:
        err.print(f"[red]error:[/red] {_escape(run.failure)}", soft_wrap=True)
        raise typer.Exit(1)


@app.command("show")
def show_cmd(
    run: Annotated[Path, typer.Argument(help="run directory")],
    failed: Annotated[bool, typer.Option("--failed", metavar="", help="only failed or errored rollouts")] = False,
    task: Annotated[str | None, typer.Option("--task", help="show this task's rollouts in full")] = None,  # noqa: UP007
    limit: Annotated[int, typer.Option(help="rows in the table (range: >= 0)")] = 50,
) -> None:
    """Show a run's summary and trajectories (a damaged line or field: FILE:LINE, exit 2)."""
    from ..core.sanitize import printable
    from ..display import records_table, summary_table, trajectory_panel
    from ..rollout.summary import summarize

    if limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    store = _open_run(run)
    m = store.manifest
    lines = {}  # id(record) -> its line, to name a field the display cannot use
    recs = []
    for n, x in store.numbered_records():
        recs.append(x)
        lines[id(x)] = n
    _note_left_out(store, run)
    planned = len(m.task_ids) * m.samples
    summary = summarize(recs, samples=m.samples)  # from the records themselves, not a stale summary.json
    if len(recs) < planned:
        err.print(f"[yellow]note:[/yellow] {len(recs)} of {planned} rollouts are stored; continue with "
                  f"`envfoundry run {_escape(m.env_spec)} --out {_escape(str(run))} --resume`")
    if failed:
        recs = [x for x in recs if x["outcome"] not in Outcome.SCORED or not x["passed"]]

    def shown(x: dict, draw):  # noqa: ANN001, ANN202 - a record drawn, or its damage named
        try:
            return draw(printable(x))  # redacted, control characters shown: safe for a terminal
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            why = f"missing field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise store.damaged(lines.get(id(x)), why, resumable=False) from None

    if task is not None:
        recs = [x for x in recs if x["task_id"] == task]
        if not recs:
            raise UsageError(f"run {str(run)!r} has no trajectory of task {task!r}")
        panels = [shown(x, trajectory_panel) for x in sorted(recs, key=lambda x: x["sample"])]
        for panel in panels:
            console.print(panel)
        return
    table = records_table([shown(x, lambda y: y) for x in recs[:limit + 1]], limit=limit)
    console.print(summary_table(printable(summary), title=f"{m.env} - {m.policy.get('spec')}"))
    console.print(table)


def _open_run(run: Path):  # noqa: ANN202
    """The run store in ``run``; its API key variable's value, where set, is redacted from what is printed."""
    import os

    from ..core.sanitize import register_secret
    from ..rollout.store import RunStore

    store = RunStore.open(run)
    name = store.manifest.policy.get("api_key_env")
    if isinstance(name, str) and name:
        register_secret(os.environ.get(name))
    return store


def _note_left_out(store, run: Path) -> None:  # noqa: ANN001
    """A note on records that are not the run's own (other tasks or samples, repeats): left out."""
    foreign, repeated = store.left_out.get("foreign", 0), store.left_out.get("repeated", 0)
    if foreign or repeated:
        parts = [f"{foreign} record(s) of tasks or samples that are not the run's"] if foreign else []
        parts += [f"{repeated} repeated record(s)"] if repeated else []
        err.print(f"[yellow]note:[/yellow] {' and '.join(parts)} in {_escape(str(run))} are left out; "
                  "`envfoundry run --out RUN --resume` moves them to set_aside.jsonl", soft_wrap=True)


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="run directory")],
    out: Annotated[Path, typer.Argument(help="output file")],
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="parquet, jsonl, or a trainer's layout: trl, hf, verl (default: by suffix)"),
    ] = None,
) -> None:
    """Export a run's trajectories, one row per (task, sample) of the run (Parquet loads with `datasets`;
    trl/hf/verl: .jsonl or Parquet by OUT's suffix)."""
    from ..rollout.export import export_store

    store = _open_run(run)
    n = export_store(store, fmt or ("jsonl" if out.suffix == ".jsonl" else "parquet"), out)
    _note_left_out(store, run)
    console.print(f"wrote {n} rows to {_escape(str(out))}")
