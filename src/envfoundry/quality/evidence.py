"""The calibration directory's state: its settings, its rounds (run stores) and ``evidence.jsonl``.

A calibration directory holds ``state.json`` (what must stay fixed when it is resumed), one run
store per round (``round-1``, ``round-2``, ...) and ``evidence.jsonl``, an append-only ledger of
scored samples: one line per (task, round), keyed by ``(env, env_version, task_id, model)`` and
the round, holding ``samples`` as ``[sample index, score, passed]``, their count ``n`` and
``passes``, and the round's error count ``errors``.
A later line for the same key replaces an earlier one (a round resumed to re-run its errors), so
evidence is never counted twice.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ..core.errors import StoreError, reason
from ..core.files import atomic_write_text
from ..core.outcome import Outcome
from ..rollout.store import MANIFEST, SUMMARY, RunStore
from .difficulty import TaskEvidence

STATE = "state.json"
EVIDENCE = "evidence.jsonl"
_ROUND = re.compile(r"round-(\d+)")


class CalibrationState(BaseModel):
    """What a calibration directory was started with; fixed for ``--resume``."""

    format: str = "envfoundry.calibration_state/1"
    env: str
    env_version: str
    env_spec: str
    env_args: dict[str, str] = Field(default_factory=dict)
    split: str
    task_seed: int
    seed: int
    samples: int = Field(description="initial samples per task (the GRPO group size)")
    model: str = Field(description="policy spec")
    model_options: dict[str, Any] = Field(default_factory=dict, description="no secrets, only env var names")
    limit: int | None = None
    band: tuple[float, float]
    budget: int
    created_at: str = ""

    def save(self, out: Path) -> None:
        atomic_write_text(out / STATE, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, out: Path) -> CalibrationState:
        p = out / STATE
        if not p.is_file():
            raise StoreError(f"{str(out)!r} holds no calibration to resume (no {STATE}); drop --resume")
        try:
            return cls.model_validate_json(p.read_text(encoding="utf-8"))
        except ValueError as e:
            raise StoreError(f"cannot read {p} (damaged?): {reason(e)}") from None


@dataclass(frozen=True)
class Round:
    """One round: a run store of ``task_ids`` x samples ``offset .. offset + samples - 1``."""

    number: int
    path: Path
    task_ids: tuple[str, ...]
    samples: int
    offset: int

    @property
    def slots(self) -> int:
        return len(self.task_ids) * self.samples

    def finished_cleanly(self) -> bool:
        """All rollouts stored and none of them an error (so nothing to resume)."""
        sp = self.path / SUMMARY
        if not sp.is_file():
            return False
        s = json.loads(sp.read_text(encoding="utf-8"))
        return bool(s.get("complete")) and not s.get("n_errors")


def round_dir(out: Path, number: int) -> Path:
    return out / f"round-{number}"


def list_rounds(out: Path) -> list[Round]:
    """The rounds stored in ``out``, in order; an empty round directory (killed before its
    manifest was written) is removed."""
    found: list[tuple[int, Path]] = []
    for p in out.iterdir() if out.is_dir() else []:
        m = _ROUND.fullmatch(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    rounds = []
    for number, p in sorted(found):
        if not (p / MANIFEST).is_file():
            if any(p.iterdir()):
                raise StoreError(f"{str(p)!r} is not a run directory (no {MANIFEST}); move it away")
            p.rmdir()
            continue
        mf = RunStore.open(p).manifest
        rounds.append(Round(number, p, tuple(mf.task_ids), mf.samples, mf.sample_offset))
    if [r.number for r in rounds] != list(range(1, len(rounds) + 1)):
        raise StoreError(f"rounds in {str(out)!r} are not numbered 1..N: {[r.number for r in rounds]}")
    return rounds


class EvidenceLedger:
    """``evidence.jsonl``: per (task, round) scored samples of one env version and model."""

    def __init__(self, out: Path, *, env: str, env_version: str, model: str) -> None:
        self.path = out / EVIDENCE
        self.key = {"env": env, "env_version": env_version, "model": model}
        self.lines: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.is_file():
            for raw in self.path.read_bytes().split(b"\n"):
                try:
                    d = orjson.loads(raw)
                    key = (d["task_id"], int(d["round"]))
                except (ValueError, KeyError, TypeError):
                    continue  # blank or torn line
                if all(d.get(k) == v for k, v in self.key.items()):
                    self.lines[key] = d

    def has_round(self, rnd: Round) -> bool:
        return all((t, rnd.number) in self.lines for t in rnd.task_ids)

    def record_round(self, rnd: Round) -> None:
        """Read a finished round's run store and append its evidence."""
        per: dict[str, dict[str, Any]] = {
            t: {**self.key, "task_id": t, "round": rnd.number, "samples": [], "errors": 0} for t in rnd.task_ids
        }
        for r in RunStore.open(rnd.path).records():
            d = per.get(r["task_id"])
            if d is None:
                continue
            if r["outcome"] in Outcome.ERRORS:
                d["errors"] += 1
            else:
                d["samples"].append([int(r["sample"]), float(r["score"]), bool(r["passed"])])
        for d in per.values():
            d["samples"].sort()
            d["n"], d["passes"] = len(d["samples"]), sum(x[2] for x in d["samples"])
        data = b"".join(orjson.dumps(d, option=orjson.OPT_APPEND_NEWLINE) for d in per.values())
        with open(self.path, "ab+") as f:
            if f.tell() > 0:
                f.seek(-1, 2)
                if f.read(1) != b"\n":  # a torn last line from a killed process: start a new one
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for d in per.values():
            self.lines[(d["task_id"], rnd.number)] = d

    def evidence(self, task_ids: Iterable[str]) -> dict[str, TaskEvidence]:
        """Per task, all its scored samples across rounds."""
        out = {t: TaskEvidence(t) for t in task_ids}
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (t, _), d in self.lines.items():
            by_task[t].append(d)
        for t, ev in out.items():
            for d in by_task.get(t, []):
                ev.errors += int(d.get("errors", 0))
                for i, score, passed in d["samples"]:
                    ev.add(int(i), score, passed)
        return out


def allocated(rounds: Sequence[Round]) -> dict[str, int]:
    """Sample slots given to each task so far (scored or not)."""
    out: dict[str, int] = defaultdict(int)
    for r in rounds:
        for t in r.task_ids:
            out[t] += r.samples
    return out
