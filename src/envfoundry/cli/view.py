"""``view``: the local web app over runs and quality results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import _escape, app, err


@app.command("view")
def view_cmd(
    paths: Annotated[Optional[list[Path]], typer.Argument(  # noqa: UP007
        help="folders holding runs, audits, calibrations or scorecards (default: the current folder)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on (loopback unless --allow-remote)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one) (range: 0-65535)", min=0, max=65535)] = 8765,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", metavar="", help="allow a --host that is not a loopback address")] = False,
) -> None:
    """Browse runs, trajectories, world diffs, comparisons and quality results in a browser (read-only)."""
    from ..viewer import serve

    def ready(url: str) -> None:
        err.print(f"envfoundry view: serving {_escape(', '.join(str(p) for p in paths or [Path('.')]))} on "
                  f"[bold]{_escape(url)}[/bold] (Ctrl-C stops)", soft_wrap=True)

    serve([str(p) for p in paths or [Path(".")]], host=host, port=port, allow_remote=allow_remote, on_ready=ready)
