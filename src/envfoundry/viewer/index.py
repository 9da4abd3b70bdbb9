"""A byte-offset index of a run's ``trajectories.jsonl``: where each record's line is, and the few
fields the run page sorts and filters by. Never the messages.

The index is built in one pass over the file (each line parsed, and the fields the index keeps
checked; the first record of each (task, sample) of the manifest counts, as for the run store's
readers; records of other tasks or samples and repeats are left out; damaged lines are listed, not
fatal; the whole record is checked when its trajectory page reads it), then kept in a cache
folder outside the run (:mod:`envfoundry.viewer.cache`), keyed by the file's resolved path and
valid for its size, modification time and inode. A file that only grew (a run still going, or resumed in place)
is indexed from where the last pass stopped; one that was replaced (``--resume`` rewrites it) is
indexed again. The viewer never writes into a run store.
"""

from __future__ import annotations

import io
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..core.outcome import Outcome
from ..core.stats import at_k_table, wilson
from ..core.typecheck import is_int, is_number
from ..rollout.store import TRAJECTORIES, RunManifest
from ..rollout.summary import error_cause

#: outcome codes in the index (its position in this list)
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
SCORED_CODES = tuple(i for i, o in enumerate(OUTCOMES) if o in Outcome.SCORED)
ERROR_CODES = tuple(i for i, o in enumerate(OUTCOMES) if o in Outcome.ERRORS)
#: metadata knobs kept per run, and distinct values per knob (one with more is not a filter)
MAX_KNOBS = 32
MAX_KNOB_VALUES = 64
#: damaged lines listed by line (more are counted)
MAX_DAMAGED = 20
FORMAT = 1
_COLUMNS = ("offset", "length", "line", "task", "sample", "outcome", "score", "passed", "turns", "ptok", "ctok")
_TYPES = {"offset": "q", "length": "q", "line": "q", "task": "l", "sample": "q", "outcome": "b", "score": "d",
          "passed": "b", "turns": "q", "ptok": "q", "ctok": "q"}


def _knob_text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


@dataclass
class RunIndex:
    """The index of one run (see the module docstring); rows in file order."""

    file: Path
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    end: int = 0  # the byte after the last whole line read
    lines: int = 0  # lines read up to ``end``
    tasks: list[str] = field(default_factory=list)
    sample_range: tuple[int, int] = (0, 1)
    cols: dict[str, np.ndarray] = field(default_factory=dict)
    knobs: dict[str, list[str]] = field(default_factory=dict)  # knob -> its values (index = code)
    knob_cols: dict[str, np.ndarray] = field(default_factory=dict)  # knob -> code per task (-1: none)
    causes: dict[int, str] = field(default_factory=dict)  # row -> error cause
    damaged: list[tuple[int, str]] = field(default_factory=list)
    n_damaged: int = 0
    left_out: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cols["offset"]) if self.cols else 0

    def fingerprint(self) -> tuple[int, int, int]:
        return (self.size, self.mtime_ns, self.inode)

    # ------------------------------------------------------------------ reading
    def read(self, row: int) -> dict[str, Any]:
        """The record of ``row``, read from its line (the only place a conversation is read)."""
        with open(self.file, "rb") as f:
            f.seek(int(self.cols["offset"][row]))
            raw = f.read(int(self.cols["length"][row]))
        rec = orjson.loads(raw)
        if not isinstance(rec, dict):
            raise ValueError("not a record")
        return rec

    def knob(self, name: str) -> np.ndarray:
        """The code of knob ``name`` of each row (-1 where its task has none)."""
        return self.knob_cols[name][self.cols["task"]]

    def find(self, task_id: str, sample: int) -> int | None:
        try:
            ti = self.tasks.index(task_id)
        except ValueError:
            return None
        hit = np.flatnonzero((self.cols["task"] == ti) & (self.cols["sample"] == sample))
        return int(hit[0]) if len(hit) else None

    # ------------------------------------------------------------------ figures
    def scored(self) -> np.ndarray:
        return np.isin(self.cols["outcome"], SCORED_CODES)

    def per_task(self) -> tuple[np.ndarray, np.ndarray]:
        """(scored samples, passes) per task, in manifest order."""
        sc = self.scored()
        t = self.cols["task"]
        n = np.bincount(t[sc], minlength=len(self.tasks))
        c = np.bincount(t[sc & (self.cols["passed"] == 1)], minlength=len(self.tasks))
        return n, c

    def summary(self, samples: int) -> dict[str, Any]:
        """The run's figures, as :class:`~envfoundry.rollout.summary.Summary` gives them, from the index."""
        oc = np.bincount(self.cols["outcome"], minlength=len(OUTCOMES)) if len(self) else np.zeros(len(OUTCOMES), int)
        sc = self.scored()
        n = int(sc.sum())
        passes = int((sc & (self.cols["passed"] == 1)).sum())
        lo, hi = wilson(passes, n)
        nt, ct = self.per_task()
        pairs = Counter((int(a), int(b)) for a, b in zip(nt, ct, strict=True) if a)
        return {
            "n_trajectories": len(self), "n_scored": n, "n_errors": int(sum(oc[i] for i in ERROR_CODES)),
            "outcomes": {o: int(oc[i]) for i, o in enumerate(OUTCOMES)}, "n_tasks": int((nt > 0).sum()),
            "samples": samples, "passes": passes, "pass_rate": passes / n if n else None,
            "pass_rate_ci": [lo, hi] if n else None,
            "mean_score": float(self.cols["score"][sc].mean()) if n else None,
            "pass_at_k": at_k_table(pairs, samples), "pass_hat_k": at_k_table(pairs, samples, all_k=True),
            "completion_tokens": int(self.cols["ctok"].sum()) if len(self) else 0,
            "prompt_tokens": int(self.cols["ptok"].sum()) if len(self) else 0,
            "error_causes": [[c, k] for c, k in Counter(self.causes.values()).most_common(5)],
        }

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "file": str(self.file), "size": self.size, "mtime_ns": self.mtime_ns,
                "inode": self.inode, "end": self.end, "lines": self.lines, "tasks": self.tasks,
                "sample_range": list(self.sample_range), "knobs": self.knobs,
                "causes": [[k, v] for k, v in self.causes.items()], "damaged": self.damaged,
                "n_damaged": self.n_damaged, "left_out": self.left_out}
        arrays = {f"c_{k}": v for k, v in self.cols.items()}
        arrays |= {f"k_{i}": self.knob_cols[k] for i, k in enumerate(self.knobs)}
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RunIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = orjson.loads(z["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise ValueError("another index format")
            ix = cls(file=Path(meta["file"]), size=meta["size"], mtime_ns=meta["mtime_ns"], inode=meta["inode"],
                     end=meta["end"], lines=meta["lines"], tasks=meta["tasks"],
                     sample_range=tuple(meta["sample_range"]), knobs=meta["knobs"],
                     causes={int(k): v for k, v in meta["causes"]},
                     damaged=[(int(a), b) for a, b in meta["damaged"]], n_damaged=meta["n_damaged"],
                     left_out=meta["left_out"])
            ix.cols = {k: z[f"c_{k}"] for k in _COLUMNS}
            ix.knob_cols = {k: z[f"k_{i}"] for i, k in enumerate(ix.knobs)}
        return ix


def _i64(v: Any) -> bool:
    return is_int(v) and -(1 << 63) <= v < (1 << 63)


def problem(rec: Any) -> str | None:
    """Why a parsed line cannot be indexed: the fields the index keeps, checked as
    :func:`~envfoundry.core.record.check_record` checks them (None when they are fine)."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a record"
    for key in ("task_id", "sample", "outcome"):
        if key not in rec:
            return f"no {key}"
    if not isinstance(rec["task_id"], str):
        return "task_id is not a string"
    if not _i64(rec["sample"]):
        return "sample is not a 64-bit integer"
    outcome = rec["outcome"]
    if outcome not in OUTCOMES:
        return f"outcome {str(outcome)[:40]!r} is not one of {', '.join(OUTCOMES)}"
    if outcome in Outcome.SCORED:
        if not is_number(rec.get("score")):
            return f"a {outcome} record without a numeric score"
        if not isinstance(rec.get("passed"), bool):
            return f"a {outcome} record without a boolean 'passed'"
    if "turns" in rec and not _i64(rec["turns"]):
        return "turns is not a 64-bit integer"
    usage = rec.get("usage")
    if usage is not None and (not isinstance(usage, dict) or not all(_i64(v) for v in usage.values())):
        return "usage holds token counts that are not 64-bit integers"
    if rec.get("error") is not None and not isinstance(rec["error"], str):
        return "error is not a string"
    return None


class _Builder:
    """One pass over the lines from ``start`` on, appending to what an earlier pass found."""

    def __init__(self, prev: RunIndex) -> None:
        self.ix = prev
        self.cols = {k: array(_TYPES[k], prev.cols[k].tolist() if prev.cols else []) for k in _COLUMNS}
        self.n = len(self.cols["offset"])
        self.task_pos = {t: i for i, t in enumerate(prev.tasks)}
        tasks_seen = self.cols["task"].tolist()
        self.seen = set(zip(tasks_seen, self.cols["sample"].tolist(), strict=True))
        self.knob_seen = set(tasks_seen)  # tasks whose metadata has been read (a task's is the same in each record)
        self.knob_codes = {k: {v: i for i, v in enumerate(vals)} for k, vals in prev.knobs.items()}
        self.knob_cols = {k: prev.knob_cols[k].copy() for k in prev.knobs}
        self.too_many: set[str] = set()
        self.left_out = Counter(prev.left_out)

    def damaged(self, line: int, why: str) -> None:
        self.ix.n_damaged += 1
        if len(self.ix.damaged) < MAX_DAMAGED:
            self.ix.damaged.append((line, why))

    def add(self, off: int, length: int, line_no: int, raw: bytes) -> None:
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return self.damaged(line_no, f"not valid JSON ({e})")
        why = problem(rec)
        if why is not None:
            return self.damaged(line_no, why)
        ti = self.task_pos.get(rec["task_id"])
        s = rec["sample"]
        lo, hi = self.ix.sample_range
        if ti is None or not lo <= s < hi:
            self.left_out["foreign"] += 1
            return None
        if (ti, s) in self.seen:
            self.left_out["repeated"] += 1
            return None
        self.seen.add((ti, s))
        c = self.cols
        outcome = rec["outcome"]
        scored = outcome in Outcome.SCORED
        usage = rec.get("usage") or {}
        c["offset"].append(off)
        c["length"].append(length)
        c["line"].append(line_no)
        c["task"].append(ti)
        c["sample"].append(s)
        c["outcome"].append(OUTCOMES.index(outcome))
        c["score"].append(float(rec["score"]) if scored else float("nan"))
        c["passed"].append(int(rec["passed"]) if scored else -1)
        c["turns"].append(rec.get("turns") or 0)
        c["ptok"].append(usage.get("prompt_tokens", 0))
        c["ctok"].append(usage.get("completion_tokens", 0))
        if not scored:
            self.ix.causes[self.n] = error_cause(rec.get("error")) or "(no message)"
        if ti not in self.knob_seen:
            self.knob_seen.add(ti)
            self._knobs(ti, rec.get("metadata"))
        self.n += 1
        return None

    def _knobs(self, ti: int, meta: Any) -> None:
        """The task's knobs: the scalar values of its metadata, coded per knob."""
        if not isinstance(meta, dict):
            return
        for k, v in meta.items():
            if not isinstance(v, (str, int, float, bool)) or k in self.too_many:
                continue
            codes = self.knob_codes.get(k)
            if codes is None:
                if len(self.knob_codes) >= MAX_KNOBS:
                    continue
                codes = self.knob_codes[k] = {}
                self.knob_cols[k] = np.full(len(self.ix.tasks), -1, dtype=np.int64)
            text = _knob_text(v)
            code = codes.get(text)
            if code is None:
                if len(codes) >= MAX_KNOB_VALUES:
                    self.too_many.add(k)
                    del self.knob_codes[k], self.knob_cols[k]
                    continue
                code = codes[text] = len(codes)
            self.knob_cols[k][ti] = code

    def finish(self) -> RunIndex:
        ix = self.ix
        ix.cols = {k: np.frombuffer(self.cols[k], dtype=self.cols[k].typecode).copy() for k in _COLUMNS}
        ix.cols["task"] = ix.cols["task"].astype(np.int64)
        ix.knobs = {k: list(codes) for k, codes in self.knob_codes.items()}
        ix.knob_cols = {k: self.knob_cols[k] for k in ix.knobs}
        ix.left_out = dict(self.left_out)
        return ix


def build(run_dir: Path, manifest: RunManifest, prev: RunIndex | None = None,
          progress: Callable[[int], None] | None = None) -> RunIndex:
    """Index ``run_dir``'s trajectories, from where ``prev`` stopped when the file only grew since."""
    tp = run_dir / TRAJECTORIES
    try:
        st = tp.stat()
    except FileNotFoundError:
        return RunIndex(file=tp, tasks=list(manifest.task_ids), cols=_empty(),
                        sample_range=_samples(manifest))
    fresh = RunIndex(file=tp, tasks=list(manifest.task_ids), sample_range=_samples(manifest), cols=_empty())
    base = prev if (prev is not None and prev.inode == st.st_ino and prev.end <= st.st_size
                    and prev.tasks == fresh.tasks and prev.sample_range == fresh.sample_range) else fresh
    if base is prev and prev is not None and prev.fingerprint() == (st.st_size, st.st_mtime_ns, st.st_ino):
        return prev
    b = _Builder(RunIndex(file=tp, tasks=base.tasks, sample_range=base.sample_range, cols=base.cols,
                          knobs=dict(base.knobs), knob_cols=dict(base.knob_cols), causes=dict(base.causes),
                          damaged=list(base.damaged), n_damaged=base.n_damaged, left_out=dict(base.left_out),
                          end=base.end, lines=base.lines))
    off, line_no = base.end, base.lines
    with open(tp, "rb") as f:
        f.seek(off)
        for raw in f:
            if not raw.endswith(b"\n"):  # a torn last line (a killed or still running process)
                break
            line_no += 1
            if raw.strip():
                b.add(off, len(raw), line_no, raw)
            off += len(raw)
            if progress is not None and line_no % 4096 == 0:
                progress(off)
    ix = b.finish()
    ix.end, ix.lines = off, line_no
    ix.size, ix.mtime_ns, ix.inode = st.st_size, st.st_mtime_ns, st.st_ino
    return ix


def _samples(m: RunManifest) -> tuple[int, int]:
    return (m.sample_offset, m.sample_offset + m.samples)


def _empty() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=np.int64 if k == "task" else _TYPES[k]) for k in _COLUMNS}
