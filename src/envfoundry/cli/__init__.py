"""The ``envfoundry`` command line: parses, calls the library, prints.

Exit codes, the same in every command: 0 ok; 1 the work found problems (a check or an audit that
fails, a run with more errors than ``--max-errors``) or the machine failed the command (a full
disk, a read-only file system, no permission, a model server that is down or cannot start); 2 the
user's input (a bad option or path, a damaged file given to read); 130 interrupted (after the run
store has been flushed). Every error is one line on stderr, never a traceback, with text that
cannot be encoded escaped and registered secrets (API keys) redacted.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

from ..core.errors import EnvfoundryError, UsageError
from ..core.sanitize import printable
from ._common import app, err

# each module registers its commands on ``app``; `envfoundry --help` lists them in this order
_COMMAND_MODULES = (
    "runs",
    "quality",
    "training",
    "serve",
    "view",
    "share",
)
for _module in _COMMAND_MODULES:
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


#: an OSError with one of these errnos is about the path the user gave (exit 2); any other (a
#: full disk, a read-only file system, no permission, an I/O error) is the machine's (exit 1)
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP})


def exit_code(e: BaseException) -> int:
    """The exit code of an error that ends a command (see the module documentation)."""
    if isinstance(e, UsageError):
        return 2
    if isinstance(e, OSError) and e.errno in _PATH_ERRNOS and e.filename is not None:
        return 2
    return 1


def _say(message: str) -> None:
    from ._common import _escape

    err.print(f"[red]error:[/red] {_escape(printable(message))}", soft_wrap=True)


def _os_message(e: OSError) -> str:
    names = " -> ".join(os.fsdecode(n) if isinstance(n, (str, bytes, os.PathLike)) else str(n)
                        for n in (e.filename, e.filename2) if n is not None)
    what = e.strerror or (str(e) if e.errno is None and str(e) else type(e).__name__)
    return f"{what}: {names}" if names else what


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
    except EnvfoundryError as e:  # messages are printed as text: install hints like "envfoundry[local]" survive
        _say(str(e))
        return exit_code(e)
    except OSError as e:  # a file the machine cannot read or write (a run's own writes are RunWriteErrors)
        if e.filename is None and e.errno is None:
            raise  # neither a file nor a system call: a bug, and its traceback is what helps
        _say(_os_message(e))
        return exit_code(e)
    return 0


def _entry() -> None:
    sys.exit(main())
