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

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

SCALES = ("binary", "ordinal", "continuous", "nominal")
ROLES = ("system", "user", "assistant", "tool")
KINDS = ("item", "adversarial", "pair")
#: suffixes read as CSV (tab-separated for .tsv) and as JSON Lines; others are told apart by content
CSV_SUFFIXES = (".csv", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _show(v: Any, limit: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


class Problems:
    """Bad values collected over a whole file and reported at once: each kind of problem with its
    count and a few examples (``'Unsure' x4 (l.csv:3, l.csv:7, ...)``)."""

    _NO_VALUE = object()

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, list[str]]] = {}

    def add(self, what: str, where: str, value: Any = _NO_VALUE, *, text: str | None = None) -> None:
        """Note one bad ``value`` (shown as JSON, or as ``text`` when given) at ``where``."""
        shown = text if text is not None else "" if value is Problems._NO_VALUE else _show(value, 40)
        self._groups.setdefault(what, {}).setdefault(shown, []).append(where)

    def __bool__(self) -> bool:
        return bool(self._groups)

    def count(self, what: str) -> int:
        return sum(len(w) for w in self._groups.get(what, {}).values())

    def lines(self) -> list[str]:
        out = []
        for what, by_value in self._groups.items():
            n = sum(len(w) for w in by_value.values())
            ex = []
            for shown, wheres in list(by_value.items())[:3]:
                at = ", ".join(wheres[:2]) + (", ..." if len(wheres) > 2 else "")
                ex.append(at if not shown else f"{shown} ({at})" if len(wheres) == 1 else f"{shown} x{len(wheres)} ({at})")
            more = f", and {len(by_value) - 3} other value(s)" if len(by_value) > 3 else ""
            out.append(f"{n} {what}: {', '.join(ex)}{more}")
        return out

    def raise_if_any(self, hint: str = "") -> None:
        if self._groups:
            raise UsageError("; ".join(self.lines()) + (f"; {hint}" if hint else ""))


def _delimiter(p: Path, header: str) -> str:
    if p.suffix.lower() == ".tsv":
        return "\t"
    if "," not in header:  # a European spreadsheet's CSV, or tab-separated under another name
        for d in (";", "\t"):
            if d in header:
                return d
    return ","


def _decode(p: Path, what: str) -> str:
    if p.is_dir():
        raise UsageError(f"{what} {str(p)!r} is a directory, not a JSON Lines or CSV file")
    if not p.is_file():
        raise UsageError(f"{what} {str(p)!r} does not exist")
    data = p.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise UsageError(f"{p}: UTF-16 text; agree reads UTF-8 (save the file as UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(f"{p}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                         "agree reads UTF-8 JSON Lines or CSV") from None


def file_format(p: Path, text: str) -> str:
    """``"csv"`` or ``"jsonl"``: by the suffix, else by the first character (``{`` is JSON)."""
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    return "jsonl" if text.lstrip()[:1] in ("{", "[") else "csv"


def _read_csv(p: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    lines = text.splitlines()
    first = next((x for x in lines if x.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(p, first))
    header: list[str] | None = None
    out = []
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                named = [h for h in header if h]
                dup = next((h for h in named if named.count(h) > 1), None)
                if dup is not None:
                    raise UsageError(f"{p}:{reader.line_num}: column {dup!r} appears twice in the header")
                header_line = reader.line_num
                continue
            if len(row) != len(header):
                raise UsageError(f"{p}:{reader.line_num}: {len(row)} field(s), but the header (line {header_line}) "
                                 f"has {len(header)}")
            out.append((reader.line_num, {h: (c.strip() or None) for h, c in zip(header, row, strict=True) if h}))
    except csv.Error as e:
        raise UsageError(f"{p}:{reader.line_num}: not valid CSV ({e})") from None
    return out, [h for h in header or [] if h]


def _read_jsonl(path: str | Path, what: str = "file") -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a UTF-8 JSON Lines file."""
    p = Path(path)
    return _parse_jsonl(p, _decode(p, what))


def _parse_jsonl(p: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    if text.lstrip()[:1] == "[":
        raise UsageError(f"{p}: holds a JSON array; agree reads JSON Lines (one object per line) or CSV")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise UsageError(f"{p}:{n}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{p}:{n}: expected a JSON object, got {_show(obj)}")
        out.append((n, obj))
    return out


def read_table(path: str | Path, what: str = "file") -> tuple[list[tuple[int, dict[str, Any]]], list[str], str]:
    """The rows of a JSON Lines or CSV file as ``(line, {column: value})``, the columns seen (in
    order) and the format. CSV cells are stripped text, an empty cell None."""
    p = Path(path)
    text = _decode(p, what)
    if file_format(p, text) == "csv":
        rows, columns = _read_csv(p, text)
        return rows, columns, "csv"
    rows = _parse_jsonl(p, text)
    return rows, list(dict.fromkeys(k for _, r in rows for k in r)), "jsonl"


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [obj for _, obj in _read_jsonl(path)]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(v: Any) -> int | float | None:
    """A finite number from a JSON number or its text (``"1"``, ``" 0.5 "``, ``"1e3"``); whole numbers as
    int; None for anything else."""
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        v = float(v.strip())
    if not _is_number(v) or not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v)


def parse_label(v: Any) -> int | float | str | None:
    """A label as a number (true/false as 1/0, numbers written as text read as numbers) or
    stripped text; None for a missing label (null, empty text). ValueError for anything else."""
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if _is_number(v):
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return number(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        n = number(s)
        return s if n is None else n
    raise ValueError("not a number, true/false or text")


def _id_value(v: Any) -> str | None:
    """An id: text (stripped) or a whole number (``7`` and ``7.0`` read as "7"); None if neither."""
    if isinstance(v, str):
        return v.strip() or None
    if _is_number(v) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return None


def _id(r: dict[str, Any], key: str, where: str) -> str:
    """``r[key]`` as an id: text or a whole number."""
    if key not in r or r[key] is None or r[key] == "":
        raise UsageError(f"{where}: needs {key!r}")
    v = _id_value(r[key])
    if v is None:
        raise UsageError(f"{where}: {key!r} must be text or a whole number, got {_show(r[key])}")
    return v


def _rubric(v: Any, where: str) -> dict[str, bool] | None:
    """A ``{"item": true/false}`` object (or null)."""
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(x, bool) or x in (0, 1) for x in v.values()):
        raise UsageError(f"{where}: 'rubric' must be an object of true/false answers, got {_show(v)}")
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
        rid = _id_value(r.get(id_field))
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
        ann = _id_value(ann)
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
        rid = _id_value(r.get("id"))
        if rid is None:
            bad.add("record(s) with no 'id'" if r.get("id") in (None, "") else
                    "record(s) whose 'id' must be text or a whole number", where,
                    *(() if r.get("id") in (None, "") else (r.get("id"),)))
            return False
        r["id"] = rid
    if r.get("error"):
        return True  # a failed judgement: counted, left out
    score = r.get("score")
    if score is not None and not (_is_number(score) and math.isfinite(score)):
        text = isinstance(score, str) and number(score) is None
        bad.add("'score'(s) not a finite number" + ("; a text verdict goes in 'label'" if text else "")
                + ("; in JSON write numbers without quotes" if isinstance(score, str) and not text else ""),
                where, score)
        return False
    if _is_number(r.get("passed")) and r["passed"] in (0, 1):
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
        pair = _id_value(r.get("pair"))
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
        raise UsageError(f"{where}: a message is an object with 'role' and 'content', got {_show(m)}")
    if m.get("role") not in ROLES:
        raise UsageError(f"{where}: 'role' must be one of {', '.join(ROLES)}, got {_show(m.get('role'))}")
    if not isinstance(m.get("content"), (str, type(None))):
        raise UsageError(f"{where}: 'content' must be text or null, got {_show(m.get('content'))}")
    calls = m.get("tool_calls")
    if calls is not None and not (isinstance(calls, list)
                                  and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls)):
        raise UsageError(f"{where}: 'tool_calls' must be a list of objects with a 'name', got {_show(calls)}")
    for key in ("name", "tool_call_id"):
        if not isinstance(m.get(key), (str, type(None))):
            raise UsageError(f"{where}: {key!r} must be text or null, got {_show(m.get(key))}")


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """Transcripts for a judge: ``{"id", "messages": [{"role", "content"}, ...], "task_id"?, "context"?}``."""
    out = []
    seen: dict[str, int] = {}
    for n, r in _read_jsonl(path, "items file"):
        where = f"{path}:{n}"
        r["id"] = _id(r, "id", where)
        if r["id"] in seen:
            raise UsageError(f"{where}: id {r['id']!r} is already on line {seen[r['id']]}")
        seen[r["id"]] = n
        msgs = r.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise UsageError(f"{where}: 'messages' must be a non-empty list of chat messages, got {_show(msgs)}")
        for k, m in enumerate(msgs, 1):
            _message(m, f"{where}: message {k}")
        if "task_id" in r and r["task_id"] is not None:
            r["task_id"] = _id(r, "task_id", where)
        if not isinstance(r.get("context"), (str, type(None))):
            raise UsageError(f"{where}: 'context' must be text or null, got {_show(r.get('context'))}")
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
    from ..rollout.store import atomic_write_text

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
    from ..envs import BUILTIN

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
