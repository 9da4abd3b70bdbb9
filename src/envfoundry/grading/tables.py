"""Reading the tables ``envfoundry agree`` is given: JSON Lines or CSV (told apart by the suffix,
else by the first character), UTF-8 with or without a byte-order mark; and the values in them:
numbers (also written as text), labels, ids. Bad values are collected over a whole file and
reported at once (:class:`Problems`)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

#: suffixes read as CSV (tab-separated for .tsv) and as JSON Lines; others are told apart by content
CSV_SUFFIXES = (".csv", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


def show_value(v: Any, limit: int = 60) -> str:
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
        shown = text if text is not None else "" if value is Problems._NO_VALUE else show_value(value, 40)
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
                times = f" x{len(wheres)}" if len(wheres) > 1 else ""
                ex.append(f"{shown}{times} ({at})" if shown else at)
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


def read_jsonl(path: str | Path, what: str = "file") -> list[tuple[int, dict[str, Any]]]:
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
            raise UsageError(f"{p}:{n}: expected a JSON object, got {show_value(obj)}")
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


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(v: Any) -> int | float | None:
    """A finite number from a JSON number or its text (``"1"``, ``" 0.5 "``, ``"1e3"``); whole numbers as
    int; None for anything else."""
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        v = float(v.strip())
    if not is_number(v) or not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v)


def parse_label(v: Any) -> int | float | str | None:
    """A label as a number (true/false as 1/0, numbers written as text read as numbers) or
    stripped text; None for a missing label (null, empty text). ValueError for anything else."""
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if is_number(v):
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


def id_value(v: Any) -> str | None:
    """An id: text (stripped) or a whole number (``7`` and ``7.0`` read as "7"); None if neither."""
    if isinstance(v, str):
        return v.strip() or None
    if is_number(v) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return None
