"""Export a run's trajectories to Parquet (via pyarrow) or JSONL, or in a trainer's layout
(``trl``, ``hf``, ``verl``: see :mod:`envfoundry.rollout.export_trainers`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from .store import STORE_FILES, RunStore

FORMATS = ("parquet", "jsonl", "trl", "hf", "verl")


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    """One row per trajectory; nested fields as JSON text so the schema is stable."""
    return {
        "task_id": r["task_id"],
        "sample": int(r["sample"]),
        "seed": int(r["seed"]) if r.get("seed") is not None else None,
        "split": r.get("split"),
        "outcome": r["outcome"],
        "score": r.get("score"),
        "passed": r.get("passed"),
        "turns": int(r.get("turns", 0)),
        "explanation": r.get("explanation"),
        "error": r.get("error"),
        "prompt_tokens": int((r.get("usage") or {}).get("prompt_tokens", 0)),
        "completion_tokens": int((r.get("usage") or {}).get("completion_tokens", 0)),
        "turn_usage": json.dumps(r.get("turn_usage", [])),
        "messages": json.dumps(r.get("messages", []), ensure_ascii=False),
        "breakdown": json.dumps(r.get("breakdown"), ensure_ascii=False),
        "metadata": json.dumps(r.get("metadata", {}), ensure_ascii=False),
        "timings": json.dumps(r.get("timings", {})),
    }


def check_output(run: Path, out: str | Path, fmt: str) -> Path:
    """``out`` as a file to write, or a UsageError: never one of the run store's own files (that
    would replace the run's records), never an existing directory, in a folder that exists, with a
    suffix that matches the format (``.parquet`` or ``.jsonl``; trainer layouts take either)."""
    outp = Path(out)
    try:
        where = outp.resolve().parent
    except (RuntimeError, OSError) as e:  # a symlink loop
        raise UsageError(f"{str(outp)!r} cannot be resolved: {e}") from None
    if where == run.resolve() and outp.name in STORE_FILES:
        raise UsageError(f"{str(outp)!r} is one of the run's own files; export to another file")
    if outp.is_dir():
        raise UsageError(f"{str(outp)!r} is a directory; give a file name (e.g. {str(outp / 'export.parquet')!r})")
    if not outp.parent.is_dir():
        what = "is not a directory" if outp.parent.exists() else "does not exist"
        raise UsageError(f"output folder {str(outp.parent)!r} {what}")
    suffixes = {"parquet": (".parquet",), "jsonl": (".jsonl",)}.get(fmt, (".parquet", ".jsonl"))
    if outp.suffix not in suffixes:
        raise UsageError(f"{str(outp)!r}: the {fmt} export is written to a file ending in "
                         f"{' or '.join(suffixes)} (e.g. {str(outp.with_suffix(suffixes[0]))!r})")
    return outp


def write_rows(rows: list[dict[str, Any]], outp: Path, *, jsonl: bool, schema: Any = None) -> None:
    """Write ``rows`` as JSON Lines or Parquet (``schema``: a pyarrow schema) through a temporary
    file that replaces ``outp`` only when complete, and is removed when writing fails."""
    tmp = outp.with_name(f".{outp.name}.tmp")
    try:
        if jsonl:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
        os.replace(tmp, outp)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {str(outp)!r}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_SCHEMA = [
    ("task_id", "string"), ("sample", "int64"), ("seed", "int64"), ("split", "string"), ("outcome", "string"),
    ("score", "float64"), ("passed", "bool_"), ("turns", "int64"), ("explanation", "string"), ("error", "string"),
    ("prompt_tokens", "int64"), ("completion_tokens", "int64"), ("turn_usage", "string"), ("messages", "string"),
    ("breakdown", "string"), ("metadata", "string"), ("timings", "string"),
]


def export_run(run: str | Path, fmt: str, out: str | Path) -> int:
    """Write the run's records to ``out``; returns the number of rows. Written atomically."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from: {', '.join(FORMATS)})")
    if fmt in ("trl", "hf", "verl"):
        from .export_trainers import export_for_trainer

        return export_for_trainer(run, fmt, out)
    store = RunStore.open(run)
    outp = check_output(store.path, out, fmt)
    rows = [_flat(r) for r in store.records()]
    schema = None
    if fmt == "parquet":
        import pyarrow as pa

        schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _SCHEMA])
    write_rows(rows, outp, jsonl=fmt == "jsonl", schema=schema)
    return len(rows)
