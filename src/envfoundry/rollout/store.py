"""The run store: a directory per run with a manifest, append-only records and a summary.

``trajectories.jsonl`` gets one line per finished rollout. Lines are group-committed: buffered
for at most ``FLUSH_INTERVAL_S`` (or ``FLUSH_RECORDS`` records) and written with one ``os.write``
on an ``O_APPEND`` descriptor, so a process killed at any instant leaves whole lines plus at most
one torn last line, which :meth:`RunStore.prepare_resume` drops; the few rollouts still in the
buffer of a killed process are simply run again on resume. A clean stop or Ctrl-C flushes.
Error records are moved to ``errors.jsonl`` on resume and their rollouts run again, so the final
file holds exactly one record per (task_id, sample).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import StoreError, reason
from ..core.outcome import Outcome
from .summary import light_record

MANIFEST = "manifest.json"
TRAJECTORIES = "trajectories.jsonl"
ERRORS = "errors.jsonl"
SUMMARY = "summary.json"
#: the files a run directory is made of (an export must never replace one)
STORE_FILES = frozenset({MANIFEST, TRAJECTORIES, ERRORS, SUMMARY})
FLUSH_INTERVAL_S = 0.05
FLUSH_RECORDS = 64
_ORJSON_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
ERROR_OUTCOMES = frozenset(o.value for o in Outcome if o.is_error)
OUTCOMES = frozenset(o.value for o in Outcome)


def encode_record(record: dict[str, Any]) -> bytes:
    """One record as its line in ``trajectories.jsonl`` (JSON, newline-terminated)."""
    try:  # string keys (the usual case) take orjson's fast path, about twice as fast
        return orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # e.g. integer keys in task metadata
        return orjson.dumps(record, default=str, option=_ORJSON_OPTS)


class RunManifest(BaseModel):
    """What defines a run; enough to resume it and to reproduce it."""

    model_config = ConfigDict(extra="allow")

    env: str = Field(description="environment name")
    env_version: str
    env_spec: str = Field(description="how the environment was given (name or file.py:factory)")
    env_args: dict[str, str] = Field(default_factory=dict, description="keyword arguments to the env factory")
    split: str
    limit: int | None
    task_ids: list[str] = Field(description="the selected tasks, in order")
    samples: int = Field(description="rollouts per task (a GRPO group)")
    seed: int = Field(description="run seed; rollout seeds hash (seed, task id, sample)")
    task_seed: int = Field(description="seed of the procedural task source")
    policy: dict[str, Any] = Field(description="policy spec and sampling options, no secrets")
    concurrency: int
    timeout_s: float | None
    max_turns: int | None
    package_version: str
    started_at: str
    python: str
    sample_offset: int = Field(0, description="sample indices run sample_offset .. sample_offset + samples - 1")
    calibration: str | None = Field(None, description="calibrated_split.json behind split 'calibrated'")


def _is_record(rec: Any) -> bool:
    """Whether a parsed line is a trajectory record readers can rely on: a string task id, an
    integer sample, a known outcome, token counts that are integers, and for a scored outcome a
    numeric score and a boolean ``passed``."""
    if not (isinstance(rec, dict) and {"task_id", "sample", "outcome"} <= rec.keys()):
        return False
    sample = rec["sample"]
    if not isinstance(rec["task_id"], str) or not isinstance(sample, int) or isinstance(sample, bool):
        return False
    if rec["outcome"] not in OUTCOMES:
        return False
    usage = rec.get("usage")
    if usage is not None and not (isinstance(usage, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in usage.values())):
        return False
    if rec["outcome"] in ("completed", "truncated"):
        score = rec.get("score")
        return isinstance(score, (int, float)) and not isinstance(score, bool) and isinstance(rec.get("passed"), bool)
    return True


def _record_key(line: bytes) -> tuple[tuple[str, int], dict[str, Any]] | None:
    """((task_id, sample), record) of a stored line, or None when it is not a whole record."""
    if not line.strip():
        return None
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not _is_record(rec):
        return None
    return (rec["task_id"], rec["sample"]), rec


def ensure_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create ``path`` (and its parents) as a directory, or raise a StoreError saying why not."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise StoreError(f"{what} {str(p)!r} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create {what} {str(p)!r}: {e.strerror or e}") from None
    return p


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename). A failure (a full
    disk) leaves the old file as it was, no temporary file, and an OSError naming ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(e.errno, e.strerror, str(path)) from None  # the errno's own subclass


class RunStore:
    """A run directory. Use :meth:`create` for a new run and :meth:`open` to resume or read."""

    def __init__(self, path: Path, manifest: RunManifest) -> None:
        self.path = path
        self.manifest = manifest
        self._fd: int | None = None
        self._buf: list[bytes] = []
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------ lifecycle
    @staticmethod
    def check_new(path: str | Path) -> Path:
        """``path`` if a new run may be made there (absent or an empty directory), else a StoreError."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise StoreError(f"run directory {str(p)!r} exists and is not a directory")
        if p.exists() and any(p.iterdir()):
            raise StoreError(
                f"run directory {str(p)!r} is not empty; pass --resume to continue that run "
                "or choose another --out"
            )
        return p

    @classmethod
    def create(cls, path: str | Path, manifest: RunManifest) -> RunStore:
        p = cls.check_new(path)
        ensure_dir(p, "run directory")
        atomic_write_text(p / MANIFEST, manifest.model_dump_json(indent=2))
        return cls(p, manifest)

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        p = Path(path)
        mf = p / MANIFEST
        if not mf.is_file():
            raise StoreError(f"{str(p)!r} is not a run directory (no {MANIFEST})")
        try:
            text = mf.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise StoreError(f"cannot read {mf} (damaged?): {reason(e)}") from None
        except OSError as e:  # unreadable (permissions): the machine's, not the input's (exit 1)
            raise OSError(e.errno, e.strerror, str(mf)) from None
        try:
            manifest = RunManifest.model_validate_json(text)
        except ValueError as e:
            raise StoreError(f"cannot read {mf} (damaged?): {reason(e)}") from None
        return cls(p, manifest)

    def prepare_resume(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Drop a torn last line and damaged or repeated records, move error records aside to
        ``errors.jsonl``; return the finished records by (task_id, sample), each as its
        :func:`~envfoundry.rollout.summary.light_record` (a resumed run of a million rollouts does
        not hold their messages). The file is read line by line, and rewritten (to a temporary
        file, then renamed) only when something is dropped."""
        tp = self.path / TRAJECTORIES
        if not tp.exists():
            return {}
        done: dict[tuple[str, int], dict[str, Any]] = {}
        drop: set[int] = set()  # line numbers that do not stay
        errors: list[bytes] = []
        n = 0
        ends_cleanly = True
        with open(tp, "rb") as f:
            for n, line in enumerate(f):
                ends_cleanly = line.endswith(b"\n")
                key = _record_key(line)
                if key is None or key[0] in done:
                    drop.add(n)  # blank, torn (a killed process), damaged or repeated: runs again
                    continue
                rec = key[1]
                if rec["outcome"] in ERROR_OUTCOMES:
                    errors.append(line.rstrip(b"\n"))
                    drop.add(n)
                    continue
                done[key[0]] = light_record(rec)
        if errors:  # first: were the rewrite below to fail, they are still in the trajectories
            ep = self.path / ERRORS
            try:
                with open(ep, "ab") as f:
                    f.write(b"".join(e + b"\n" for e in errors))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(ep)) from None
        if drop or not ends_cleanly:
            tmp = tp.with_name(f".{tp.name}.tmp")
            try:
                with open(tp, "rb") as src, open(tmp, "wb") as dst:
                    for i, line in enumerate(src):
                        if i not in drop:
                            dst.write(line if line.endswith(b"\n") else line + b"\n")
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(tmp, tp)
            except OSError as e:  # a full disk: the trajectories stay as they were
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise OSError(e.errno, e.strerror, str(tp)) from None
        return done

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------- records
    def append(self, record: dict[str, Any]) -> None:
        """Queue one record; written within ``FLUSH_INTERVAL_S`` (see :meth:`flush`)."""
        self.append_line(encode_record(record))

    def append_line(self, line: bytes) -> None:
        """Queue one record already encoded by :func:`encode_record` (a worker process did it)."""
        self._buf.append(line)
        if len(self._buf) >= FLUSH_RECORDS or time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        """Write the queued records with a single ``os.write``."""
        self._last_flush = time.monotonic()
        if not self._buf:
            return
        if self._fd is None:
            self._fd = os.open(self.path / TRAJECTORIES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = b"".join(self._buf)
        self._buf.clear()
        view = memoryview(data)
        try:
            while view:  # os.write may write less than asked for very large buffers
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:  # a full disk: name the file (a torn last line is dropped on --resume)
            raise OSError(e.errno, e.strerror, str(self.path / TRAJECTORIES)) from None

    def records(self) -> Iterator[dict[str, Any]]:
        tp = self.path / TRAJECTORIES
        if not tp.exists():
            return
        with open(tp, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        rec = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # torn last line of a killed run
                    if _is_record(rec):
                        yield rec  # anything else is damage, skipped as --resume drops it

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY, json.dumps(summary, indent=2))

    def summary(self) -> dict[str, Any] | None:
        sp = self.path / SUMMARY
        return json.loads(sp.read_text()) if sp.exists() else None
