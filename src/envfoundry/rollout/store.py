"""The run store: a directory per run with a manifest, append-only records and a summary.

``trajectories.jsonl`` gets one line per finished rollout. Lines are group-committed: buffered
for at most ``FLUSH_INTERVAL_S`` (or ``FLUSH_RECORDS`` records) and written with one ``os.write``
on an ``O_APPEND`` descriptor, so a process killed at any instant leaves whole lines plus at most
one torn last line, which :meth:`RunStore.prepare_resume` drops; the few rollouts still in the
buffer of a killed process are simply run again on resume. A clean stop or Ctrl-C flushes.
Error records are moved to ``errors.jsonl`` on resume and their rollouts run again; damaged lines,
records of other tasks or samples than the run's and repeated records are moved to
``set_aside.jsonl``; so the final file holds exactly one record per (task_id, sample).

Every record is written whatever it holds (see :mod:`envfoundry.core.sanitize`): text that cannot
be encoded is escaped and registered secrets are redacted, and the record lists the fields
changed under ``escaped`` and ``redacted``. Readers (:meth:`RunStore.records`, ``show``,
``export``) treat a damaged line as damage (:class:`DamagedRunError`, ``FILE:LINE``, exit 2),
except a torn last line, which a killed or running process leaves. A line is a
:class:`~envfoundry.core.record.TrajectoryRecord`, checked by
:func:`~envfoundry.core.record.check_record`; a run store whose manifest has a newer
``schema_version`` than this package's is refused, never misread.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import StoreError, reason
from ..core.files import atomic_write_text, atomic_writer, ensure_dir, lock_folder, unlock_folder
from ..core.outcome import Outcome
from ..core.record import SCHEMA_VERSION, UNVERSIONED, check_record, check_schema_version
from ..core.sanitize import clean_text, holds_secret, registered_secrets, storable
from .summary import light_record

MANIFEST = "manifest.json"
TRAJECTORIES = "trajectories.jsonl"
ERRORS = "errors.jsonl"
SUMMARY = "summary.json"
SET_ASIDE = "set_aside.jsonl"
#: the files a run directory is made of (an export must never replace one)
STORE_FILES = frozenset({MANIFEST, TRAJECTORIES, ERRORS, SUMMARY, SET_ASIDE})
FLUSH_INTERVAL_S = 0.05
FLUSH_RECORDS = 64


class DamagedRunError(StoreError):
    """A run file holds a line or field that no writer of ours produces (exit code 2)."""


def encode_record(record: dict[str, Any]) -> bytes:
    """One record as its line in ``trajectories.jsonl`` (JSON, newline-terminated), whatever it
    holds: a record that does not encode as it is (lone surrogates, integers beyond 64 bits,
    nesting deeper than the encoder follows, keys that are not strings) or that holds a registered
    secret is made :func:`~envfoundry.core.sanitize.storable`, and lists the paths of what was
    changed under ``escaped`` and ``redacted``."""
    try:  # the usual case: orjson's fast path
        line = orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError
        line = None
    if line is not None and not (registered_secrets() and holds_secret(line)):
        return line
    clean, changes = storable(record)
    if isinstance(clean, dict):
        clean.update(changes.summary())
    return orjson.dumps(clean, option=orjson.OPT_APPEND_NEWLINE)


class RunManifest(BaseModel):
    """What defines a run; enough to resume it and to reproduce it."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(
        SCHEMA_VERSION, ge=1, strict=True,
        description="the run store's schema (envfoundry.core.record); a newer one than this package's is refused",
    )
    env: str = Field(description="environment name")
    env_version: str
    env_spec: str = Field(description="how the environment was given (name or file.py:factory)")
    env_args: dict[str, str] = Field(default_factory=dict, description="keyword arguments to the env factory")
    split: str
    limit: int | None
    task_ids: list[str] = Field(min_length=1, description="the selected tasks, in order")
    samples: int = Field(ge=1, description="rollouts per task (a GRPO group)")
    seed: int = Field(description="run seed; rollout seeds hash (seed, task id, sample)")
    task_seed: int = Field(description="seed of the procedural task source")
    policy: dict[str, Any] = Field(description="policy spec and sampling options, no secrets")
    concurrency: int = Field(ge=1)
    timeout_s: float | None = Field(gt=0, allow_inf_nan=False)
    max_turns: int | None = Field(ge=1)
    package_version: str
    started_at: str
    python: str
    sample_offset: int = Field(0, ge=0, description="sample indices run sample_offset .. sample_offset + samples - 1")
    calibration: str | None = Field(None, description="calibrated_split.json behind split 'calibrated'")
    env_package: dict[str, str] | None = Field(
        None, description="package, version and content_hash of an environment loaded by name from an installed "
        "package (envfoundry.core.provenance)")


#: why a parsed line is not a record readers can rely on (the name readers used before core.record)
record_problem = check_record


def _parse(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a line that is a whole record, else (None, why not)."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return None, f"not valid JSON ({e})"
    why = check_record(rec)
    return (None, why) if why else (rec, None)


def _line_of(text: str, key: str) -> int | None:
    """The line of a JSON document (as the store writes it, indented) where ``key`` is given."""
    needle = json.dumps(key) + ":"
    for i, ln in enumerate(text.splitlines(), 1):
        if ln.lstrip().startswith(needle):
            return i
    return None


def _damaged(path: Path, line: int | None, why: str) -> DamagedRunError:
    where = f"{path}:{line}" if line is not None else str(path)
    return DamagedRunError(f"cannot read {where} (damaged?): {why}")


def _load_json(path: Path) -> tuple[Any, str]:
    """The JSON document in ``path`` and its text; damage (not UTF-8, not JSON) as a DamagedRunError."""
    try:
        raw = path.read_bytes()
    except OSError as e:  # unreadable (permissions): the machine's, not the input's (exit 1)
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _damaged(path, raw[: e.start].count(b"\n") + 1, "not UTF-8 text") from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as e:
        raise _damaged(path, e.lineno, f"not valid JSON ({e.msg})") from None
    except RecursionError:
        raise _damaged(path, None, "nested too deeply") from None


def _missing_parents(p: Path) -> list[Path]:
    """``p`` and those of its ancestors that do not exist, deepest first."""
    out = []
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


@contextlib.contextmanager
def creating_dir(path: str | Path, what: str = "output directory") -> Iterator[Path]:
    """:func:`ensure_dir` for a command's first writes: when the block fails (a full disk while
    writing the first file), the directories made here are removed again if still empty, so a
    failed start leaves no empty folder behind and the same command can simply be run again."""
    p = Path(path)
    made = _missing_parents(p.absolute())
    ensure_dir(p, what)
    try:
        yield p
    except BaseException:
        for d in made:  # deepest first; rmdir never removes anything that holds a file
            try:
                d.rmdir()
            except OSError:
                break
        raise


class RunStore:
    """A run directory. Use :meth:`create` for a new run and :meth:`open` to resume or read."""

    def __init__(self, path: Path, manifest: RunManifest) -> None:
        self.path = path
        self.manifest = manifest
        self._fd: int | None = None
        self._buf: list[bytes] = []
        self._last_flush = time.monotonic()
        self._locked = False  # holds the folder's writer lock (a new run, or one being resumed)
        #: what the last :meth:`records` pass left out: ``foreign`` and ``repeated`` records
        self.left_out: Counter[str] = Counter()

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
        """Make the run directory and its manifest. A failure (a full disk) leaves none of the
        directories it made behind, so the same command can simply be run again."""
        p = cls.check_new(path)
        with creating_dir(p, "run directory"):
            atomic_write_text(p / MANIFEST, manifest.model_dump_json(indent=2))
        store = cls(p, manifest)
        store._lock()
        return store

    def _lock(self) -> None:
        """Hold the run's writer lock until :meth:`close` (another process writing it is a StoreError)."""
        if not self._locked:
            lock_folder(self.path)
            self._locked = True

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open a run for reading or resuming; a damaged manifest is a :class:`DamagedRunError`
        naming the file and line, and a run store of a newer schema than this package's a
        :class:`~envfoundry.core.record.NewerSchemaError` (both exit code 2)."""
        p = Path(path)
        mf = p / MANIFEST
        if not mf.is_file():
            raise StoreError(f"{str(p)!r} is not a run directory (no {MANIFEST})")
        obj, text = _load_json(mf)
        if isinstance(obj, dict):  # first: a newer store may differ in any field
            check_schema_version(obj.get("schema_version"), p)
            obj.setdefault("schema_version", UNVERSIONED)
        try:
            manifest = RunManifest.model_validate(obj)
        except ValueError as e:
            errs = getattr(e, "errors", lambda: [])()
            loc = errs[0].get("loc", ()) if errs else ()
            line = _line_of(text, str(loc[0])) if loc else None
            raise _damaged(mf, line, reason(e)) from None
        return cls(p, manifest)

    def _own(self) -> tuple[frozenset[str], range]:
        m = self.manifest
        return frozenset(m.task_ids), range(m.sample_offset, m.sample_offset + m.samples)

    def prepare_resume(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Drop a torn last line; move error records to ``errors.jsonl`` and damaged lines,
        records of tasks or samples not the run's and repeated records to ``set_aside.jsonl``;
        return the finished records by (task_id, sample), each as its
        :func:`~envfoundry.rollout.summary.light_record` (a resumed run of a million rollouts does
        not hold their messages). The file is read line by line, and rewritten (to a temporary
        file, then renamed) only when something leaves it."""
        self._lock()
        tp = self.path / TRAJECTORIES
        if not tp.exists():
            return {}
        tasks, samples = self._own()
        done: dict[tuple[str, int], dict[str, Any]] = {}
        drop: set[int] = set()  # line numbers (from 0) that do not stay
        errors: list[bytes] = []
        aside: list[bytes] = []
        n = 0
        ends_cleanly = True
        with open(tp, "rb") as f:
            for n, line in enumerate(f):
                ends_cleanly = line.endswith(b"\n")
                if not line.strip():
                    drop.add(n)
                    continue
                rec, why = _parse(line)
                if rec is None:
                    drop.add(n)
                    if ends_cleanly:  # else a torn last line (a killed process): it runs again
                        aside.append(_aside(n + 1, f"damaged: {why}", line))
                    continue
                key = (rec["task_id"], rec["sample"])
                if key[0] not in tasks or key[1] not in samples:
                    drop.add(n)
                    aside.append(_aside(n + 1, "a record of a task or sample that is not the run's", line))
                    continue
                if rec["outcome"] in Outcome.ERRORS:
                    errors.append(line.rstrip(b"\n") + b"\n")
                    drop.add(n)
                    continue
                if key in done:
                    drop.add(n)
                    aside.append(_aside(n + 1, "a repeated record of a rollout stored before it", line))
                    continue
                done[key] = light_record(rec)
        # first: were the rewrite below to fail, they are still in the trajectories
        for name, lines in ((ERRORS, errors), (SET_ASIDE, aside)):
            if lines:
                _append_synced(self.path / name, b"".join(lines))
        if drop or not ends_cleanly:
            # a full disk: the trajectories stay as they were (an OSError naming them)
            with open(tp, "rb") as src, atomic_writer(tp, "wb") as dst:
                for i, line in enumerate(src):
                    if i not in drop:
                        dst.write(line if line.endswith(b"\n") else line + b"\n")
        return done

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._locked:
                self._locked = False
                unlock_folder(self.path)

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
            try:
                self._fd = os.open(self.path / TRAJECTORIES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(self.path / TRAJECTORIES)) from None
        data = b"".join(self._buf)
        self._buf.clear()
        view = memoryview(data)
        try:
            while view:  # os.write may write less than asked for very large buffers
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:  # a full disk: name the file (a torn last line is dropped on --resume)
            raise OSError(e.errno, e.strerror, str(self.path / TRAJECTORIES)) from None

    def numbered_records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, record) of the run's own rollouts, in file order: the first record of
        each (task_id, sample) of the manifest's tasks and samples. Records of other tasks or
        samples and repeated ones are left out and counted in :attr:`left_out`; a damaged line
        raises :class:`DamagedRunError` (``FILE:LINE``), except a torn last line, which a killed
        or running process leaves."""
        tp = self.path / TRAJECTORIES
        self.left_out = Counter()
        if not tp.exists():
            return
        tasks, samples = self._own()
        seen: set[tuple[str, int]] = set()
        try:
            f = open(tp, "rb")
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(tp)) from None
        with f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rec, why = _parse(line)
                if rec is None:
                    if line.endswith(b"\n"):
                        raise self.damaged(n, str(why))
                    continue  # the torn last line of a killed (or still running) process
                key = (rec["task_id"], rec["sample"])
                if key[0] not in tasks or key[1] not in samples:
                    self.left_out["foreign"] += 1
                    continue
                if key in seen:
                    self.left_out["repeated"] += 1
                    continue
                seen.add(key)
                yield n, rec

    def records(self) -> Iterator[dict[str, Any]]:
        """The run's own records (see :meth:`numbered_records`)."""
        for _, rec in self.numbered_records():
            yield rec

    def damaged(self, line: int | None, why: str, *, resumable: bool = True) -> DamagedRunError:
        """The error for a line of this run's records that a reader cannot use, saying how to go
        on: ``resumable`` when :meth:`prepare_resume` sets such a line aside (its
        :func:`~envfoundry.core.record.check_record`), else the line must be repaired or removed by hand."""
        fix = (f"`envfoundry run --out {self.path} --resume` moves the line to {SET_ASIDE} and runs its rollout "
               "again" if resumable else "repair or remove that line")
        return _damaged(self.path / TRAJECTORIES, line, f"{why}; {fix}")

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY, json.dumps(storable(summary)[0], indent=2))

    def summary(self) -> dict[str, Any] | None:
        """The stored summary (None when there is none yet); damage is a :class:`DamagedRunError`."""
        sp = self.path / SUMMARY
        if not sp.exists():
            return None
        obj, text = _load_json(sp)
        if not isinstance(obj, dict):
            raise _damaged(sp, 1, f"a JSON {type(obj).__name__}, not a summary")
        for key, kind in (("n_trajectories", int), ("n_tasks", int), ("samples", int), ("outcomes", dict)):
            if not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
                raise _damaged(sp, _line_of(text, key), f"{key} is missing or not {kind.__name__}")
        for key in ("pass_rate", "mean_score"):
            v = obj.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise _damaged(sp, _line_of(text, key), f"{key} is not a number")
        return obj


def _aside(line: int, why: str, raw: bytes) -> bytes:
    """A line of ``set_aside.jsonl``: where the line was, why it left, and its text (bytes that
    are not UTF-8 escaped, secrets redacted)."""
    text, _ = clean_text(raw.rstrip(b"\n").decode("utf-8", "backslashreplace"))
    return orjson.dumps({"file": TRAJECTORIES, "line": line, "why": why, "text": text},
                        option=orjson.OPT_APPEND_NEWLINE)


def _append_synced(path: Path, data: bytes) -> None:
    try:
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
