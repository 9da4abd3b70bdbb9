"""Where ``envfoundry agree`` finds and puts things: the labelled sets environments ship
(``--labels support``), the scores stored in a run (``--run``), and the judge's scores written
whole (``--save``), never over one of the inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...core.errors import UsageError
from ...core.files import atomic_write_text
from ...core.outcome import Outcome
from ...core.registry import REGISTRY as BUILTIN
from ...core.registry import is_path_target
from ...rollout.run import Run


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_save(path: Path, inputs: dict[str, Path | None]) -> None:
    """A UsageError unless ``path`` can take the judge's scores: not a directory, in a folder that
    exists, and none of ``inputs`` (``{"--labels": path, ...}``), which it would replace."""
    if path.is_dir():
        raise UsageError(f"--save {str(path)!r} is a directory; give a file name "
                         f"(e.g. {str(path / 'scores.jsonl')!r})")
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise UsageError(f"--save: folder {str(path.parent)!r} {what}")
    for opt, p in inputs.items():
        if p is not None and _same_file(path, p):
            raise UsageError(f"--save {str(path)!r} is the {opt} file; the judge's scores would replace it "
                             "(choose another file)")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` whole or not at all (the run store's atomic write; a row that cannot be
    encoded fails before the file is touched)."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def scores_from_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """One score per stored rollout, id ``TASK_ID:SAMPLE``; error outcomes become ``error`` records."""
    out = []
    for r in Run.open(run_dir).records():
        rec: dict[str, Any] = {"id": f"{r['task_id']}:{r['sample']}", "task_id": r["task_id"]}
        if r["outcome"] in (Outcome.COMPLETED, Outcome.TRUNCATED):
            rec.update(score=r["score"], passed=r["passed"])
        else:
            last = (r.get("error") or "").strip().splitlines()[-1:]
            rec["error"] = f"{r['outcome']}: {last[0] if last else 'no message'}"
        out.append(rec)
    return out


def _env_folders(name: str) -> list[Path]:
    """The folders of the package (or file) that defines the environment known as ``name``."""
    import importlib.util

    target = BUILTIN[name].rpartition(":")[0]
    if is_path_target(target):
        return [Path(target).parent]
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):  # a parent package that is not installed any more
        spec = None
    return [Path(d) for d in (spec.submodule_search_locations or [])] if spec else []


def shipped_labels(name_or_path: str | os.PathLike[str]) -> Path:
    """A labels file, or the labels an environment known by name ships in its package's
    ``data/labels.jsonl`` (``--labels support``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    name = os.fspath(name_or_path)
    if name in BUILTIN:
        for d in _env_folders(name):
            cand = d / "data" / "labels.jsonl"
            if cand.is_file():
                return cand
        raise UsageError(f"environment {name!r} ships no labels (data/labels.jsonl)")
    if p.is_dir():
        raise UsageError(f"labels file {name!r} is a directory, not a JSON Lines file")
    raise UsageError(f"labels file {name!r} does not exist")
