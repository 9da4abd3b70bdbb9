"""Export a run's trajectories to Parquet (via pyarrow) or JSONL, or in a trainer's layout
(``trl``, ``hf``, ``verl``: see :mod:`envfoundry.rollout.export_trainers`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from .store import RunStore

FORMATS = ("parquet", "jsonl", "trl", "hf", "verl")


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    """One row per trajectory; nested fields as JSON text so the schema is stable."""
    return {
        "task_id": r["task_id"],
        "sample": int(r["sample"]),
        "seed": int(r["seed"]),
        "split": r.get("split"),
        "outcome": r["outcome"],
        "score": r.get("score"),
        "passed": r.get("passed"),
        "turns": int(r.get("turns", 0)),
        "explanation": r.get("explanation"),
        "error": r.get("error"),
        "prompt_tokens": int((r.get("usage") or {}).get("prompt_tokens", 0)),
        "completion_tokens": int((r.get("usage") or {}).get("completion_tokens", 0)),
        "messages": json.dumps(r.get("messages", []), ensure_ascii=False),
        "breakdown": json.dumps(r.get("breakdown"), ensure_ascii=False),
        "metadata": json.dumps(r.get("metadata", {}), ensure_ascii=False),
        "timings": json.dumps(r.get("timings", {})),
    }


def export_run(run: str | Path, fmt: str, out: str | Path) -> int:
    """Write the run's records to ``out``; returns the number of rows. Written atomically."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from: {', '.join(FORMATS)})")
    if fmt in ("trl", "hf", "verl"):
        from .export_trainers import export_for_trainer

        return export_for_trainer(run, fmt, out)
    store = RunStore.open(run)
    rows = [_flat(r) for r in store.records()]
    outp = Path(out)
    if outp.parent and not outp.parent.exists():
        raise UsageError(f"output folder {str(outp.parent)!r} does not exist")
    tmp = outp.with_name(f".{outp.name}.tmp")
    if fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([
            ("task_id", pa.string()), ("sample", pa.int64()), ("seed", pa.int64()),
            ("split", pa.string()), ("outcome", pa.string()), ("score", pa.float64()),
            ("passed", pa.bool_()), ("turns", pa.int64()), ("explanation", pa.string()),
            ("error", pa.string()), ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()), ("messages", pa.string()),
            ("breakdown", pa.string()), ("metadata", pa.string()), ("timings", pa.string()),
        ])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    os.replace(tmp, outp)
    return len(rows)
