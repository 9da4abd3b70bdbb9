"""The ``envfoundry`` command line: parses, calls the library, prints.

Exit codes: 0 ok, 1 a check or audit found problems, or the machine failed the command (a model
server that cannot start, a full disk), 2 bad usage or bad input, 130 interrupted (after the run
store has been flushed).
"""

from __future__ import annotations

import importlib
import os
import sys

from ..core.errors import EnvfoundryError, UsageError
from ._common import _escape, app, err

# each module registers its commands on ``app``; `envfoundry --help` lists them in this order
for _module in ("runs", "quality", "training"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]


#: the commands that store their progress and continue with --resume
_RESUMABLE = frozenset({"run", "calibrate", "audit", "train"})


def _interrupted(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), "")
    out = next((a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
                for i, a in enumerate(args) if a == "--out" or a.startswith("--out=")), None)
    if command not in _RESUMABLE:
        err.print("interrupted")
    elif out is not None and not (os.path.isdir(out) and os.listdir(out)):
        err.print("interrupted before anything was stored (e.g. while the model was starting)")
    else:
        err.print("interrupted; what finished is stored (continue with --resume)")


def main(argv: list[str] | None = None) -> int:
    """Entry point; maps errors to exit codes instead of tracebacks."""
    try:
        app(args=argv, standalone_mode=True)  # typer formats usage errors and exits 2
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130:  # typer turns KeyboardInterrupt into exit code 130
            _interrupted(argv)
        return code
    except KeyboardInterrupt:
        _interrupted(argv)
        return 130
    except UsageError as e:  # escaped: messages hold install commands like pip install "envfoundry[local]"
        err.print(f"[red]error:[/red] {_escape(str(e))}", soft_wrap=True)
        return 2
    except EnvfoundryError as e:  # e.g. the local model server failed to start
        err.print(f"[red]error:[/red] {_escape(str(e))}", soft_wrap=True)
        return 1
    except OSError as e:  # a file the machine cannot read or write (a run's own writes are RunWriteErrors)
        if e.filename is None:
            raise  # not about a file: a bug, and its traceback is what helps
        names = " -> ".join(os.fsdecode(n) if isinstance(n, (str, bytes, os.PathLike)) else str(n)
                            for n in (e.filename, e.filename2) if n is not None)
        err.print(f"[red]error:[/red] {_escape(e.strerror or type(e).__name__)}: {_escape(names)}", soft_wrap=True)
        return 1
    return 0


def _entry() -> None:
    sys.exit(main())
