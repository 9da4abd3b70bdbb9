"""Reading what ``envfoundry agree`` compares: labels (id, label, annotator) and grader scores
as JSON Lines, the scores stored in a run, and the labelled sets environments ship.

Bad input is a UsageError naming the file and record: labels are numbers (or true/false) or text,
never both, finite; ``"label": null`` is a missing label; scores are finite numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..core.errors import UsageError


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"file {str(p)!r} does not exist")
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise UsageError(f"{p}:{n}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{p}:{n}: expected a JSON object")
        out.append(obj)
    return out


SCALES = ("binary", "ordinal", "continuous", "nominal")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_labels(path: str | Path) -> list[dict[str, Any]]:
    """Label records; ``"label": null`` is a missing label (the record is left out). Labels must be
    all numbers (or true/false) or all text, finite, and not lists or objects."""
    rows = load_jsonl(path)
    out = []
    kinds: dict[str, int] = {}
    for n, r in enumerate(rows, 1):
        if "id" not in r or "label" not in r:
            raise UsageError(f"{path}: record {n} needs 'id' and 'label' (and 'annotator')")
        v = r["label"]
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"{path}: record {n}: label {v} is not a finite number")
        if not isinstance(v, (bool, int, float, str)):
            raise UsageError(f"{path}: record {n}: a label is a number, true/false or text, got {json.dumps(v)}")
        kinds.setdefault("text" if isinstance(v, str) else "number", n)
        if len(kinds) > 1:
            raise UsageError(f"{path}: labels mix numbers (record {kinds['number']}) and text "
                             f"(record {kinds['text']}); use one kind")
        r.setdefault("annotator", "annotator")
        r["id"] = str(r["id"])
        out.append(r)
    return out


def load_scores(path: str | Path) -> list[dict[str, Any]]:
    rows = load_jsonl(path)
    for n, r in enumerate(rows, 1):
        kind = r.get("kind", "item")
        if kind == "item" and "id" not in r:
            raise UsageError(f"{path}: record {n} needs an 'id'")
        if kind == "item" and "score" not in r and "label" not in r and "passed" not in r and "error" not in r:
            raise UsageError(f"{path}: record {n} needs 'score', 'label' or 'passed'")
        score = r.get("score")
        if score is not None and not (_is_number(score) and math.isfinite(score)):
            raise UsageError(f"{path}: record {n}: 'score' must be a finite number, got {json.dumps(score)}")
        if "passed" in r and not isinstance(r["passed"], bool):
            raise UsageError(f"{path}: record {n}: 'passed' must be true or false, got {json.dumps(r['passed'])}")
    return rows


def scores_from_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """One score per stored rollout, id ``TASK_ID:SAMPLE``; error outcomes become ``error`` records."""
    from ..rollout.run import Run

    out = []
    for r in Run.open(run_dir).records():
        rec: dict[str, Any] = {"id": f"{r['task_id']}:{r['sample']}", "task_id": r["task_id"]}
        if r["outcome"] in ("completed", "truncated"):
            rec.update(score=r["score"], passed=r["passed"])
        else:
            rec["error"] = f"{r['outcome']}: {(r.get('error') or '').strip().splitlines()[-1:]}"
        out.append(rec)
    return out


def shipped_labels(name_or_path: str) -> Path:
    """A labels file, or the labels shipped with a built-in environment (``--labels support``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    from ..envs import BUILTIN

    if name_or_path in BUILTIN:
        import importlib.util

        spec = importlib.util.find_spec(BUILTIN[name_or_path].rpartition(":")[0])
        for d in (spec.submodule_search_locations or []) if spec else []:
            cand = Path(d) / "data" / "labels.jsonl"
            if cand.is_file():
                return cand
        raise UsageError(f"environment {name_or_path!r} ships no labels (data/labels.jsonl)")
    raise UsageError(f"labels file {name_or_path!r} does not exist")
