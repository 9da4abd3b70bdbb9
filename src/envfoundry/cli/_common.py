"""What every command shares: the typer app, the consoles, the environment options."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from ..core.errors import UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build, run, verify and share RL environments for LLM agents.",
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from ..core.version import __version__

        console.print(f"envfoundry {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Build, run, verify and share RL environments for LLM agents."""
    import warnings

    warnings.showwarning = _show_warning  # "warning: ..." on stderr, not Python's file:line form


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings from the library (a --limit larger than the split, a dead slot) as one line a user reads."""
    err.print(f"[yellow]warning:[/yellow] {_escape(str(message))}", soft_wrap=True)

EnvArg = Annotated[
    str | None,  # noqa: UP007 - typer needs Optional
    typer.Argument(help="a name (see `envfoundry list`), file.py:factory, pkg.mod:attr, a folder holding "
                   "environment.yaml, or http://HOST:PORT (`envfoundry serve`)"),
]
EnvOpt = Annotated[
    str | None,  # noqa: UP007
    typer.Option("--env", help="environment as path/to/file.py:factory, a folder or a URL (same as ENV)"),
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



def note_workers(workers: int, concurrency: int | None = None) -> None:
    """A note (not a refusal) when ``--workers`` exceeds the cores this process may use: each
    worker is a process, so the extra ones add start-up and contention, not speed, unless the
    model server is slow enough that workers mostly wait."""
    from ..policies.local import usable_cores

    cores = usable_cores()
    if workers > cores and (concurrency is None or workers <= concurrency):  # else it is refused anyway
        err.print(f"note: --workers {workers} is more than the {cores} core(s) this process may use; "
                  "the extra workers add start-up, not speed", soft_wrap=True)


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def check_limit(env: Any, split: str | None, limit: int | None, seed: int) -> None:
    """A ``--limit`` given for more tasks than the split has is refused (exit 2), as in ``run``;
    left out, a command takes its default number or the whole split."""
    if limit is None:
        return
    name = split or ("test" if "test" in env.splits else env.splits[0])
    try:
        n = len(env.tasks(name, seed=seed))
    except (KeyError, TypeError):
        return  # an unknown split or a source without a length: the command reports it its own way
    if limit > n:
        raise UsageError(f"--limit {limit} asks for more tasks than {env.name} split {name!r} has ({n:,}); give "
                         f"--limit {n} or leave --limit out")
