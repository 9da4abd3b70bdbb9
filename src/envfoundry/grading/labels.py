"""Reading what ``envfoundry agree`` compares: labels (id, label, annotator) and grader scores
as JSON Lines or CSV, the transcripts a judge reads, the scores stored in a run, and the labelled
sets environments ship; writing the judge's scores (``--save``).

Bad input is a UsageError naming the file and line, with every bad row of a file counted and a few
shown: labels are numbers (true/false count as 1/0), text, or numbers written as text ("0", " 1.5
"), never lists or objects or non-finite; an empty or null label is a missing label; ids are text or
whole numbers; transcripts are lists of chat messages. JSON values keep their JSON types (a
``"score"`` must be a JSON number); in CSV every cell is text, so numbers and true/false are read
from the text. A UTF-8 byte-order mark and surrounding spaces are ignored.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from .tables import Problems, id_value, is_number, number, parse_label, read_jsonl, read_table, show_value

SCALES = ("binary", "ordinal", "continuous", "nominal")
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


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """Transcripts for a judge: ``{"id", "messages": [{"role", "content"}, ...], "task_id"?, "context"?}``."""
    out = []
    seen: dict[str, int] = {}
    for n, r in read_jsonl(path, "items file"):
        where = f"{path}:{n}"
        r["id"] = _id(r, "id", where)
        if r["id"] in seen:
            raise UsageError(f"{where}: id {r['id']!r} is already on line {seen[r['id']]}")
        seen[r["id"]] = n
        msgs = r.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise UsageError(f"{where}: 'messages' must be a non-empty list of chat messages, got {show_value(msgs)}")
        for k, m in enumerate(msgs, 1):
            _message(m, f"{where}: message {k}")
        if "task_id" in r and r["task_id"] is not None:
            r["task_id"] = _id(r, "task_id", where)
        if not isinstance(r.get("context"), (str, type(None))):
            raise UsageError(f"{where}: 'context' must be text or null, got {show_value(r.get('context'))}")
        out.append(r)
    if not out:
        raise UsageError(f"items file {str(path)!r} holds no transcripts")
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_save(path: Path, inputs: dict[str, Path | None]) -> None:
    """A UsageError unless ``path`` can take the judge's scores: not a directory, in a folder that
    exists, and none of ``inputs`` (``{"--labels": path, ...}``), which it would replace."""
    if path.is_dir():
        raise UsageError(f"--save {str(path)!r} is a directory; give a file name "
                         f"(e.g. {str(path / 'scores.jsonl')!r})")
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise UsageError(f"--save: folder {str(path.parent)!r} {what}")
    for opt, p in inputs.items():
        if p is not None and _same_file(path, p):
            raise UsageError(f"--save {str(path)!r} is the {opt} file; the judge's scores would replace it "
                             "(choose another file)")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` whole or not at all (the run store's atomic write; a row that cannot be
    encoded fails before the file is touched)."""
    from ..core.files import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def scores_from_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """One score per stored rollout, id ``TASK_ID:SAMPLE``; error outcomes become ``error`` records."""
    from ..rollout.run import Run

    out = []
    for r in Run.open(run_dir).records():
        rec: dict[str, Any] = {"id": f"{r['task_id']}:{r['sample']}", "task_id": r["task_id"]}
        if r["outcome"] in ("completed", "truncated"):
            rec.update(score=r["score"], passed=r["passed"])
        else:
            last = (r.get("error") or "").strip().splitlines()[-1:]
            rec["error"] = f"{r['outcome']}: {last[0] if last else 'no message'}"
        out.append(rec)
    return out


def shipped_labels(name_or_path: str) -> Path:
    """A labels file, or the labels shipped with a built-in environment (``--labels support``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    from ..core.registry import REGISTRY as BUILTIN

    if name_or_path in BUILTIN:
        import importlib.util

        spec = importlib.util.find_spec(BUILTIN[name_or_path].rpartition(":")[0])
        for d in (spec.submodule_search_locations or []) if spec else []:
            cand = Path(d) / "data" / "labels.jsonl"
            if cand.is_file():
                return cand
        raise UsageError(f"environment {name_or_path!r} ships no labels (data/labels.jsonl)")
    if p.is_dir():
        raise UsageError(f"labels file {name_or_path!r} is a directory, not a JSON Lines file")
    raise UsageError(f"labels file {name_or_path!r} does not exist")
