"""Reading what ``envfoundry agree`` compares: labels (id, label, annotator) and grader scores
as JSON Lines, the transcripts a judge reads, the scores stored in a run, and the labelled sets
environments ship; writing the judge's scores (``--save``).

Bad input is a UsageError naming the file and line: labels are numbers (or true/false) or text,
never both, finite; ``"label": null`` is a missing label; scores are finite numbers; ids are
text or whole numbers; transcripts are lists of chat messages.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

SCALES = ("binary", "ordinal", "continuous", "nominal")
ROLES = ("system", "user", "assistant", "tool")
KINDS = ("item", "adversarial", "pair")


def _show(v: Any, limit: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _read_jsonl(path: str | Path, what: str = "file") -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a UTF-8 JSON Lines file."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {str(p)!r} is a directory, not a JSON Lines file")
    if not p.is_file():
        raise UsageError(f"{what} {str(p)!r} does not exist")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(f"{p}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                         "agree reads UTF-8 JSON Lines") from None
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


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [obj for _, obj in _read_jsonl(path)]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _id(r: dict[str, Any], key: str, where: str) -> str:
    """``r[key]`` as an id: text or a whole number."""
    if key not in r or r[key] is None:
        raise UsageError(f"{where}: needs {key!r}")
    v = r[key]
    if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return str(v)
    raise UsageError(f"{where}: {key!r} must be text or a whole number, got {_show(v)}")


def _rubric(v: Any, where: str) -> dict[str, bool] | None:
    """A ``{"item": true/false}`` object (or null)."""
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(x, bool) or x in (0, 1) for x in v.values()):
        raise UsageError(f"{where}: 'rubric' must be an object of true/false answers, got {_show(v)}")
    return {str(k): bool(x) for k, x in v.items()}


def load_labels(path: str | Path) -> list[dict[str, Any]]:
    """Label records; ``"label": null`` is a missing label (the record is left out). Labels must be
    all numbers (or true/false) or all text, finite, and not lists or objects."""
    out = []
    kinds: dict[str, int] = {}
    for n, r in _read_jsonl(path, "labels file"):
        where = f"{path}:{n}"
        if "id" not in r or "label" not in r:
            raise UsageError(f"{where}: a label record needs 'id' and 'label' (and 'annotator')")
        r["id"] = _id(r, "id", where)
        v = r["label"]
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"{where}: label {v} is not a finite number")
        if not isinstance(v, (bool, int, float, str)):
            raise UsageError(f"{where}: a label is a number, true/false or text, got {_show(v)}")
        kinds.setdefault("text" if isinstance(v, str) else "number", n)
        if len(kinds) > 1:
            raise UsageError(f"{path}: labels mix numbers (line {kinds['number']}) and text "
                             f"(line {kinds['text']}); use one kind")
        ann = r.setdefault("annotator", "annotator")
        if not isinstance(ann, str) or not ann:
            raise UsageError(f"{where}: 'annotator' must be a name (text), got {_show(ann)}")
        if "rubric" in r:
            r["rubric"] = _rubric(r["rubric"], where)
        out.append(r)
    if not out:
        raise UsageError(f"{path}: no labels (the file is empty or every label is null)")
    return out


def _score_record(r: dict[str, Any], where: str) -> None:
    """Check (and normalise the ids of) one score or probe record."""
    kind = r.get("kind", "item")
    if kind not in KINDS:
        raise UsageError(f"{where}: unknown 'kind' {_show(kind)} (known: {', '.join(KINDS)})")
    if kind != "pair":
        r["id"] = _id(r, "id", where)
    if r.get("error"):
        return  # a failed judgement: counted, left out
    score = r.get("score")
    if score is not None and not (_is_number(score) and math.isfinite(score)):
        raise UsageError(f"{where}: 'score' must be a finite number, got {_show(score)}")
    if "passed" in r and not isinstance(r["passed"], bool):
        raise UsageError(f"{where}: 'passed' must be true or false, got {_show(r['passed'])}")
    if kind == "item":
        if score is None and r.get("label") is None and "passed" not in r:
            raise UsageError(f"{where}: a score record needs 'score', 'label' or 'passed' (or 'error')")
        lab = r.get("label")
        if lab is not None and not (isinstance(lab, str) or (_is_number(lab) and math.isfinite(lab))
                                    or isinstance(lab, bool)):
            raise UsageError(f"{where}: 'label' must be a finite number, true/false or text, got {_show(lab)}")
        if "rubric" in r:
            r["rubric"] = _rubric(r["rubric"], where)
    elif kind == "adversarial":
        if not isinstance(r.get("probe"), str) or "passed" not in r:
            raise UsageError(f"{where}: an adversarial record needs 'probe' (text) and 'passed' (true/false)")
    else:
        r["pair"] = _id(r, "pair", where)
        if r.get("order") not in ("ab", "ba"):
            raise UsageError(f"{where}: a pair record's 'order' must be \"ab\" or \"ba\", got {_show(r.get('order'))}")
        if r.get("choice") not in (0, 1) or isinstance(r.get("choice"), bool):
            raise UsageError(f"{where}: a pair record's 'choice' must be 0 or 1, got {_show(r.get('choice'))}")


def load_scores(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for n, r in _read_jsonl(path, "scores file"):
        _score_record(r, f"{path}:{n}")
        rows.append(r)
    if not rows:
        raise UsageError(f"scores file {str(path)!r} is empty")
    return rows


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
