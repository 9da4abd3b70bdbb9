"""Where commands write: default folders that never collide, and one rule for a used folder."""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

from ..core.errors import UsageError

#: files that mark a folder as an envfoundry output (a run, an audit, a calibration, a training)
OUTPUT_MARKERS = ("manifest.json", "audit.json", "calibration.json", "train_config.json")


def env_stem(spec: str) -> str:
    """A short name for an environment spec: ``math``, or ``counter_env`` for ``examples/counter_env.py:make_env``."""
    return Path(spec.split(":")[0]).stem if ":" in spec else spec


def default_out(base: Path | str, prefix: str) -> Path:
    """``BASE/PREFIX-YYYYMMDD-HHMMSS``, with ``-2``, ``-3``... when that folder exists already (two
    commands in the same second): a default output folder never collides, like inspect's logs."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    first = Path(base) / f"{prefix}-{stamp}"
    p, n = first, 1
    while p.exists():
        n += 1
        p = first.with_name(f"{first.name}-{n}")
    return p


def is_envfoundry_output(p: Path) -> bool:
    """True when ``p`` holds what an envfoundry command wrote (a marker file at its top)."""
    return any((p / m).is_file() for m in OUTPUT_MARKERS)


def prepare_out(out: Path, *, command: str, resume: bool, force: bool, spec: str | None = None) -> None:
    """The rule for an output folder that is already used: without ``--resume`` it is refused,
    naming ``--resume`` and ``--force``; ``--force`` replaces it, but only an envfoundry output
    (never a folder of other files)."""
    if resume and force:
        raise UsageError("give --resume (continue what --out holds) or --force (replace it), not both")
    if resume or not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not force:
        ours = is_envfoundry_output(out)
        what = f"holds the output of an earlier `envfoundry {command}`" if ours else "is not empty"
        again = f"envfoundry {command} {spec + ' ' if spec else ''}--out {out}"
        raise UsageError(f"--out {str(out)!r} {what}: continue it with `{again} --resume`, replace it with "
                         f"`{again} --force`, or choose another --out (or none: a new timestamped folder)")
    if not is_envfoundry_output(out):
        raise UsageError(f"--force replaces only an envfoundry output folder; {str(out)!r} holds other files "
                         "(no manifest.json, audit.json, calibration.json or train_config.json): choose another --out")
    shutil.rmtree(out)
