"""What every export writes with: rows of a run's own records, the output file's checks, the
atomic write (shared by :mod:`.export` and :mod:`.export_trainers`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.files import atomic_writer
from ..core.sanitize import dumps, storable
from .store import STORE_FILES, RunStore


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
    with atomic_writer(outp, "wb") as f:
        if jsonl:
            for row in rows:
                f.write(dumps(row)[0] + b"\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist([storable(r)[0] for r in rows], schema=schema)
            pq.write_table(table, f)
