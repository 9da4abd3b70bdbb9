"""Export a run's trajectories to Parquet (via pyarrow) or JSONL, or in a trainer's layout
(``trl``, ``hf``, ``verl``: see :mod:`envfoundry.rollout.export_trainers`).

An export holds exactly one row per (task, sample) of the run's own tasks and samples (records of
other tasks and repeated records are left out, and counted); a damaged line or field is a
:class:`~envfoundry.rollout.store.DamagedRunError` naming ``FILE:LINE`` (exit 2), and nothing is
written. Rows are written escaped and with registered secrets redacted, as the store writes records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from .export_rows import check_output, json_text, own_rows, write_rows
from .store import RunStore

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
        "turn_usage": json_text(r.get("turn_usage", [])),
        "messages": json_text(r.get("messages", [])),
        "breakdown": json_text(r.get("breakdown")),
        "metadata": json_text(r.get("metadata", {})),
        "timings": json_text(r.get("timings", {})),
    }


_SCHEMA = [
    ("task_id", "string"), ("sample", "int64"), ("seed", "int64"), ("split", "string"), ("outcome", "string"),
    ("score", "float64"), ("passed", "bool_"), ("turns", "int64"), ("explanation", "string"), ("error", "string"),
    ("prompt_tokens", "int64"), ("completion_tokens", "int64"), ("turn_usage", "string"), ("messages", "string"),
    ("breakdown", "string"), ("metadata", "string"), ("timings", "string"),
]


def export_run(run: str | Path, fmt: str, out: str | Path) -> int:
    """Write the run's records to ``out``; returns the number of rows. Written atomically."""
    return export_store(RunStore.open(run), fmt, out)


def export_store(store: RunStore, fmt: str, out: str | Path) -> int:
    """:func:`export_run` of an open run store (its ``left_out`` then counts the records left out)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from: {', '.join(FORMATS)})")
    if fmt in ("trl", "hf", "verl"):
        from .export_trainers import export_for_trainer

        return export_for_trainer(store, fmt, out)
    outp = check_output(store.path, out, fmt)
    rows = list(own_rows(store, _flat))
    schema = None
    if fmt == "parquet":
        import pyarrow as pa

        schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _SCHEMA])
    write_rows(rows, outp, jsonl=fmt == "jsonl", schema=schema)
    return len(rows)
