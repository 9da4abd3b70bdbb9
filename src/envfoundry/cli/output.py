"""Where commands write: default folders that never collide, and one rule for a used folder."""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.files import is_locked_elsewhere

#: files that mark a folder as an envfoundry output (a run, an audit, a calibration, a training)
OUTPUT_MARKERS = ("manifest.json", "audit.json", "calibration.json", "train_config.json")

#: what each command's output holds at its top: a marker file and keys its JSON object must have
#: (a ``manifest.json`` of some other program is not a run); an audit or a calibration that was
#: interrupted before its own file was written is known by its sub-runs or its state file
_KINDS: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "run": (("manifest.json", frozenset({"env", "env_version", "task_ids", "samples", "policy"})),),
    "audit": (("audit.json", frozenset({"env", "env_version", "findings", "probes"})),),
    "calibrate": (("calibration.json", frozenset({"format", "env", "verdicts", "band"})),
                  ("state.json", frozenset({"format", "env", "band", "budget"}))),
    "train": (("train_config.json", frozenset({"env", "model", "steps", "group_size"})),),
}
#: the largest marker file read (a run's manifest lists its task ids)
_MAX_MARKER_BYTES = 256 << 20


def env_stem(spec: str) -> str:
    """A short name for an environment spec: ``math``, ``counter_env`` for ``examples/counter_env.py:make_env``,
    ``inventory`` for the folder ``./examples/inventory``, ``127.0.0.1-8000`` for ``http://127.0.0.1:8000``."""
    if "://" in spec:  # a served environment
        return "".join(c if c.isalnum() or c in "._" else "-" for c in spec.split("://", 1)[1]).strip("-") or "remote"
    if ":" not in spec and ("/" in spec or "\\" in spec):  # a folder (declarative environment)
        return Path(spec.rstrip("/\\")).name or "env"
    return Path(spec.split(":")[0]).stem if ":" in spec else spec


def default_out(base: Path | str, prefix: str) -> Path:
    """``BASE/PREFIX-YYYYMMDD-HHMMSS``, with ``-2``, ``-3``... when that folder exists already (two
    commands in the same second): a default output folder never collides, like inspect's logs. The
    folder is made here (an atomic claim, so two processes never get the same one) and removed
    again when the command ends with it still empty (a refusal before any work)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    first = Path(base) / f"{prefix}-{stamp}"
    made = [d for d in reversed(first.absolute().parents) if not d.exists()]
    p, n = first, 1
    while True:
        try:
            p.mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
            p = first.with_name(f"{first.name}-{n}")
        except OSError as e:
            raise UsageError(f"cannot make the output folder {str(p)!r}: {e.strerror or e}; choose --out") from None
    _remove_when_done([p.absolute(), *reversed(made)])
    return p


def _remove_when_done(dirs: list[Path]) -> None:
    """Remove ``dirs`` (deepest first) that are still empty when the command ends (its click
    context closes; at exit outside the command line)."""
    def remove() -> None:
        for d in dirs:
            try:
                d.rmdir()  # never removes a folder that holds anything
            except OSError:
                break

    ctx = _current_context()
    if ctx is not None:
        ctx.call_on_close(remove)
    else:
        atexit.register(remove)


def _current_context() -> Any:
    """The running command's click context (typer >= 0.20 has its own copy of click), or None."""
    import importlib

    for name in ("typer._click.globals", "click.globals"):
        try:
            ctx = importlib.import_module(name).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            return ctx
    return None


def _marker(p: Path) -> dict[str, Any] | None:
    """The JSON object in the file ``p``, or None (absent, too large, not JSON, not an object)."""
    try:
        if not p.is_file() or p.stat().st_size > _MAX_MARKER_BYTES:
            return None
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def output_kind(p: Path) -> str | None:
    """The command whose output ``p`` holds (``run``, ``audit``, ``calibrate``, ``train``), known by
    its marker file's content, or None when it is not an envfoundry output."""
    for kind, markers in _KINDS.items():
        for name, keys in markers:
            obj = _marker(p / name)
            if obj is not None and keys <= obj.keys():
                return kind
    with contextlib.suppress(OSError):  # an audit stopped before audit.json: only its baseline and probe runs
        entries = list(p.iterdir())
        if entries and all(_audit_part(d) for d in entries) and any(output_kind(d) == "run" for d in entries):
            return "audit"
    return None


def _audit_part(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink() and (d.name == "baseline-noop" or d.name.startswith("probe-"))


def is_envfoundry_output(p: Path) -> bool:
    """True when ``p`` holds what an envfoundry command wrote (see :func:`output_kind`)."""
    return output_kind(p) is not None


def prepare_out(out: Path, *, command: str, resume: bool, force: bool, spec: str | None = None) -> None:
    """The rule for an output folder that is already used: ``--resume`` continues only this
    command's own output; without it the folder is refused, naming ``--resume`` (for this
    command's own output) and ``--force``; ``--force`` empties it,
    but only an envfoundry output (never a folder of other files), and never one that holds the
    current directory."""
    if resume and force:
        raise UsageError("give --resume (continue what --out holds) or --force (replace it), not both")
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a directory")
    if not any(out.iterdir()):
        return
    kind = output_kind(out)
    if resume:  # continue only this command's own output: never write an audit into a calibration
        if kind != command:
            holds = f"the output of `envfoundry {kind}`" if kind else "no envfoundry output"
            raise UsageError(f"--resume continues an earlier `envfoundry {command}`, but --out {str(out)!r} holds "
                             f"{holds}: give the --out of the {command} to continue, or drop --resume")
        return
    if not force:
        again = f"envfoundry {command} {shlex.quote(spec) + ' ' if spec else ''}--out {shlex.quote(str(out))}"
        other = "choose another --out (or none: a new timestamped folder)"
        if kind == command:
            raise UsageError(f"--out {str(out)!r} holds the output of an earlier `envfoundry {command}`: continue "
                             f"it with `{again} --resume`, replace it with `{again} --force`, or {other}")
        if kind is not None:
            raise UsageError(f"--out {str(out)!r} holds the output of `envfoundry {kind}`: replace it with "
                             f"`{again} --force`, or {other}")
        raise UsageError(f"--out {str(out)!r} is not empty; {other}: it holds files that are not an envfoundry "
                         "output")
    if kind is None:
        raise UsageError(f"--force replaces only an envfoundry output folder; {str(out)!r} holds other files "
                         "(no envfoundry manifest.json, audit.json, calibration.json or train_config.json): "
                         "choose another --out")
    target, here = out.resolve(), Path.cwd().resolve()
    if here != target and here.is_relative_to(target):
        raise UsageError(f"--force would delete the current directory, which is inside {str(out)!r}: run the "
                         "command from another folder")
    busy = [d for d in (out, *(c for c in out.iterdir() if c.is_dir() and not c.is_symlink()))
            if is_locked_elsewhere(d)]
    if busy:
        raise UsageError(f"--force would delete {str(busy[0])!r}, which another envfoundry process is writing "
                         "now; stop it first")
    for child in out.iterdir():  # the folder itself stays (it may be `.`, or a link to a run)
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
