"""Export a run's trajectories to Parquet (via pyarrow) or JSONL, or in a trainer's layout
(``trl``, ``hf``, ``verl``: see :mod:`envfoundry.rollout.export_trainers`).

An export holds exactly one row per (task, sample) of the run's own tasks and samples (records of
other tasks and repeated records are left out, and counted); a damaged line or field is a
:class:`~envfoundry.rollout.store.DamagedRunError` naming ``FILE:LINE`` (exit 2), and nothing is
written. Rows are written escaped and with registered secrets redacted, as the store writes records.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.sanitize import dumps, storable
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
        "turn_usage": json_text(r.get("turn_usage", [])),
        "messages": json_text(r.get("messages", [])),
        "breakdown": json_text(r.get("breakdown")),
        "metadata": json_text(r.get("metadata", {})),
        "timings": json_text(r.get("timings", {})),
    }


def json_text(value: Any) -> str:
    """A nested field as JSON text (escaped and redacted like a stored record)."""
    return dumps(value)[0].decode("utf-8")


def own_rows(store: RunStore, row: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Iterator[dict[str, Any]]:
    """``row(record)`` for each of the run's own records (None: no row); a record whose fields
    ``row`` cannot use is damage, reported with its file and line."""
    for line, rec in store.numbered_records():
        try:
            out = row(rec)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            why = f"missing field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise store.damaged(line, why, resumable=False) from None
        if out is not None:
            yield out


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
    file that replaces ``outp`` only when complete, and is removed when writing fails.
    A failure to write (a full disk, a read-only file system) is an OSError naming ``outp``:
    the machine's fault (exit 1)."""
    tmp = outp.with_name(f".{outp.name}.tmp")
    try:
        if jsonl:
            with open(tmp, "wb") as f:
                for row in rows:
                    f.write(dumps(row)[0] + b"\n")
                f.flush()
                os.fsync(f.fileno())
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist([storable(r)[0] for r in rows], schema=schema)
            pq.write_table(table, tmp)
        os.replace(tmp, outp)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        code = e.errno if e.errno is not None else _errno_in(str(e))
        why = e.strerror or (os.strerror(code) if code else " ".join(str(e).split()))
        raise OSError(code, why, str(outp)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


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


def _errno_in(message: str) -> int | None:
    """The errno in a message such as pyarrow's ``[Errno 28] Error writing bytes ...``."""
    m = re.search(r"\[Errno (\d+)\]|errno (\d+)", message)
    if m:
        return int(m.group(1) or m.group(2))
    return errno.ENOSPC if "No space left" in message else None
