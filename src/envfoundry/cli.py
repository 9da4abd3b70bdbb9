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
    split: Annotated[str, typer.Option(help="task split")] = "test",
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
    fmt: Annotated[str, typer.Option("--format", help="parquet or jsonl")] = "parquet",
) -> None:
    """Export a run's trajectories (Parquet loads with `datasets`)."""
    from .rollout.export import export_run

    n = export_run(run, fmt, out)
    console.print(f"wrote {n} rows to {out}")


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
