"""Reading what ``envfoundry agree`` compares: labels (id, label, annotator) and grader scores
as JSON Lines or CSV (or as records in memory), and the transcripts a judge reads.

Bad input is a UsageError naming the file and line, with every bad row of a file counted and a few
shown: labels are numbers (true/false count as 1/0), text, or numbers written as text ("0", " 1.5
"), never lists or objects or non-finite; an empty or null label is a missing label; ids are text or
whole numbers; transcripts are lists of chat messages. JSON values keep their JSON types (a
``"score"`` must be a JSON number); in CSV every cell is text, so numbers and true/false are read
from the text. A UTF-8 byte-order mark and surrounding spaces are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ...core.errors import UsageError
from ...grading.labelset import SCALES
from ...grading.values import Problems, id_value, is_number, number, parse_label, show_value
from .tables import read_jsonl, read_table

__all__ = ["KINDS", "ROLES", "SCALES", "check_items", "check_scores", "load_items", "load_jsonl", "load_labels",
           "load_scores"]

ROLES = ("system", "user", "assistant", "tool")
KINDS = ("item", "adversarial", "pair")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [obj for _, obj in read_jsonl(path)]


def _id(r: dict[str, Any], key: str, where: str) -> str:
    """``r[key]`` as an id: text or a whole number."""
    if key not in r or r[key] is None or r[key] == "":
        raise UsageError(f"{where}: needs {key!r}")
    v = id_value(r[key])
    if v is None:
        raise UsageError(f"{where}: {key!r} must be text or a whole number, got {show_value(r[key])}")
    return v


def _rubric(v: Any, where: str) -> dict[str, bool] | None:
    """A ``{"item": true/false}`` object (or null)."""
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(x, bool) or x in (0, 1) for x in v.values()):
        raise UsageError(f"{where}: 'rubric' must be an object of true/false answers, got {show_value(v)}")
    return {str(k): bool(x) for k, x in v.items()}


def _no_column(path: str | Path, field: str, columns: list[str], option: str) -> UsageError:
    near = [c for c in columns if c.strip().lower() == field.strip().lower()]
    hint = f"did you mean {near[0]!r}? " if near else ""
    shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    return UsageError(f"{path}: no column {field!r} (columns: {shown or 'none'}); {hint}name the column with "
                      f"{option}")


def load_labels(path: str | Path, *, id_field: str = "id", label_field: str = "label",
                annotator_field: str | None = None) -> list[dict[str, Any]]:
    """Label records ``{"id", "label", "annotator", "where", "rubric"?}`` from JSON Lines or CSV,
    with the columns named by ``id_field``, ``label_field`` and ``annotator_field`` (default
    ``"annotator"``; without that column every label is one annotator's). A missing label (null,
    an empty cell) stays as ``label: None`` (counted, then left out). Every bad row is reported
    at once, counted, with examples."""
    rows, columns, fmt = read_table(path, "labels file")
    if not rows:
        raise UsageError(f"labels file {str(path)!r} is empty" + (" (a header and no rows)" if columns else ""))
    ann_field = annotator_field or "annotator"
    for field, option in ((id_field, "--id-field"), (label_field, "--label-field"),
                          *([(ann_field, "--annotator-field")] if annotator_field else [])):
        if field not in columns:
            raise _no_column(path, field, columns, option)
    has_ann = ann_field in columns
    bad = Problems()
    out = []
    for n, r in rows:
        where = f"{path}:{n}"
        rid = id_value(r.get(id_field))
        if rid is None:
            bad.add(f"row(s) with no {id_field!r}" if r.get(id_field) in (None, "") else
                    f"row(s) whose {id_field!r} is not text or a whole number", where,
                    *(() if r.get(id_field) in (None, "") else (r.get(id_field),)))
            continue
        try:
            label = parse_label(r.get(label_field))
        except ValueError as e:
            bad.add(f"label(s) {e}", where, r.get(label_field))
            continue
        ann: Any = r.get(ann_field) if has_ann else "annotator"
        ann = id_value(ann)
        if ann is None:
            bad.add(f"row(s) with no annotator in {ann_field!r}" if r.get(ann_field) in (None, "") else
                    f"row(s) whose annotator {ann_field!r} is not a name", where,
                    *(() if r.get(ann_field) in (None, "") else (r.get(ann_field),)))
            continue
        rec: dict[str, Any] = {"id": rid, "label": label, "annotator": ann, "where": where}
        if fmt == "jsonl" and r.get("rubric") is not None:
            rec["rubric"] = _rubric(r["rubric"], where)
        out.append(rec)
    bad.raise_if_any()
    if all(r["label"] is None for r in out):
        raise UsageError(f"{path}: no labels (every label is empty or null)")
    return out


def _flag(v: Any) -> bool | None:
    """true/false from a JSON boolean or, in CSV, the text true/false, yes/no, 1/0."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        w = v.strip().lower()
        return True if w in _TRUE else False if w in _FALSE else None
    return None


def _csv_types(r: dict[str, Any]) -> None:
    """A CSV score row's cells as the JSON values they stand for (numbers, true/false)."""
    for key in ("score", "repeat", "choice"):
        if isinstance(r.get(key), str) and number(r[key]) is not None:
            r[key] = number(r[key])
    if isinstance(r.get("passed"), str) and _flag(r["passed"]) is not None:
        r["passed"] = _flag(r["passed"])
    if r.get("passed") is None:
        r.pop("passed", None)


def _score_record(r: dict[str, Any], where: str, bad: Problems) -> bool:
    """Check (and normalise the ids of) one score or probe record; False (and the problem noted
    in ``bad``) when it is bad."""
    kind = r.get("kind") or "item"
    if kind not in KINDS:
        bad.add(f"record(s) of unknown 'kind' (known: {', '.join(KINDS)})", where, kind)
        return False
    if kind != "pair":
        rid = id_value(r.get("id"))
        if rid is None:
            bad.add("record(s) with no 'id'" if r.get("id") in (None, "") else
                    "record(s) whose 'id' must be text or a whole number", where,
                    *(() if r.get("id") in (None, "") else (r.get("id"),)))
            return False
        r["id"] = rid
    if r.get("error"):
        return True  # a failed judgement: counted, left out
    score = r.get("score")
    if score is not None and not (is_number(score) and math.isfinite(score)):
        text = isinstance(score, str) and number(score) is None
        bad.add("'score'(s) not a finite number" + ("; a text verdict goes in 'label'" if text else "")
                + ("; in JSON write numbers without quotes" if isinstance(score, str) and not text else ""),
                where, score)
        return False
    if is_number(r.get("passed")) and r["passed"] in (0, 1):
        r["passed"] = bool(r["passed"])
    if "passed" in r and not isinstance(r["passed"], bool):
        bad.add("'passed' value(s) not true or false", where, r["passed"])
        return False
    if kind == "item":
        if score is None and r.get("label") in (None, "") and "passed" not in r:
            bad.add("score record(s) with no 'score', 'label' or 'passed' (or 'error')", where)
            return False
        try:
            parse_label(r.get("label"))
        except ValueError as e:
            bad.add(f"'label'(s) {e}", where, r.get("label"))
            return False
        if "rubric" in r:
            r["rubric"] = _rubric(r["rubric"], where)
    elif kind == "adversarial":
        if not isinstance(r.get("probe"), str) or "passed" not in r:
            bad.add("adversarial record(s) without 'probe' (text) and 'passed' (true/false)", where)
            return False
    else:
        pair = id_value(r.get("pair"))
        if pair is None:
            bad.add("pair record(s) with no 'pair' id", where)
            return False
        r["pair"] = pair
        if r.get("order") not in ("ab", "ba"):
            bad.add("pair record(s) whose 'order' is not \"ab\" or \"ba\"", where, r.get("order"))
            return False
        if r.get("choice") not in (0, 1) or isinstance(r.get("choice"), bool):
            bad.add("pair record(s) whose 'choice' is not 0 or 1", where, r.get("choice"))
            return False
    return True


def load_scores(path: str | Path, *, id_field: str | None = None) -> list[dict[str, Any]]:
    """Score and probe records from JSON Lines or CSV. Ids are in ``"id"`` (or, when the file has
    no such column, in ``id_field``: the labels' id column); every bad record is reported at once."""
    rows, columns, fmt = read_table(path, "scores file")
    if not rows:
        raise UsageError(f"scores file {str(path)!r} is empty" + (" (a header and no rows)" if columns else ""))
    rename = id_field if id_field and id_field != "id" and "id" not in columns and id_field in columns else None
    bad = Problems()
    out = []
    for n, r in rows:
        if rename:
            r["id"] = r.pop(rename)
        if fmt == "csv":
            _csv_types(r)
        if _score_record(r, f"{path}:{n}", bad):
            r["where"] = f"{path}:{n}"
            out.append(r)
    bad.raise_if_any()
    return out


def _records(rows: Iterable[Any], what: str) -> list[tuple[str, dict[str, Any]]]:
    """``(where, copy of the record)`` for records given in memory; a UsageError for a non-mapping."""
    if isinstance(rows, (str, bytes, Mapping)):
        raise UsageError(f"{what} records must be a list of objects (dicts), got {type(rows).__name__}")
    out = []
    for k, r in enumerate(rows, 1):
        if not isinstance(r, Mapping):
            raise UsageError(f"{what} record {k}: expected an object (a dict), got {show_value(r)}")
        out.append((f"{what} record {k}", dict(r)))
    return out


def check_scores(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Score and probe records given in memory, checked as :func:`load_scores` checks a file's
    (copies; the records given are not changed)."""
    recs = _records(rows, "scores")
    if not recs:
        raise UsageError("the scores hold no records")
    bad = Problems()
    out = []
    for where, r in recs:
        if _score_record(r, where, bad):
            r["where"] = where
            out.append(r)
    bad.raise_if_any()
    return out


def _message(m: Any, where: str) -> None:
    if not isinstance(m, dict):
        raise UsageError(f"{where}: a message is an object with 'role' and 'content', got {show_value(m)}")
    if m.get("role") not in ROLES:
        raise UsageError(f"{where}: 'role' must be one of {', '.join(ROLES)}, got {show_value(m.get('role'))}")
    if not isinstance(m.get("content"), (str, type(None))):
        raise UsageError(f"{where}: 'content' must be text or null, got {show_value(m.get('content'))}")
    calls = m.get("tool_calls")
    if calls is not None and not (isinstance(calls, list)
                                  and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls)):
        raise UsageError(f"{where}: 'tool_calls' must be a list of objects with a 'name', got {show_value(calls)}")
    for key in ("name", "tool_call_id"):
        if not isinstance(m.get(key), (str, type(None))):
            raise UsageError(f"{where}: {key!r} must be text or null, got {show_value(m.get(key))}")


def _item(r: dict[str, Any], where: str, seen: dict[str, str], here: str) -> dict[str, Any]:
    """One transcript record checked (ids normalised); ``seen``: id -> where it was first given."""
    r["id"] = _id(r, "id", where)
    if r["id"] in seen:
        raise UsageError(f"{where}: id {r['id']!r} is already {seen[r['id']]}")
    seen[r["id"]] = here
    msgs = r.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise UsageError(f"{where}: 'messages' must be a non-empty list of chat messages, got {show_value(msgs)}")
    for k, m in enumerate(msgs, 1):
        _message(m, f"{where}: message {k}")
    if "task_id" in r and r["task_id"] is not None:
        r["task_id"] = _id(r, "task_id", where)
    if not isinstance(r.get("context"), (str, type(None))):
        raise UsageError(f"{where}: 'context' must be text or null, got {show_value(r.get('context'))}")
    return r


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """Transcripts for a judge: ``{"id", "messages": [{"role", "content"}, ...], "task_id"?, "context"?}``."""
    seen: dict[str, str] = {}
    out = [_item(r, f"{path}:{n}", seen, f"on line {n}") for n, r in read_jsonl(path, "items file")]
    if not out:
        raise UsageError(f"items file {str(path)!r} holds no transcripts")
    return out


def check_items(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Transcripts given in memory, checked as :func:`load_items` checks a file's (copies)."""
    seen: dict[str, str] = {}
    out = [_item(r, where, seen, f"in {where}") for where, r in _records(rows, "items")]
    if not out:
        raise UsageError("the items hold no transcripts")
    return out
