"""Reading the tables ``envfoundry agree`` is given: JSON Lines or CSV (told apart by the suffix,
else by the first character), UTF-8 with or without a byte-order mark. The values in them are read
by :mod:`envfoundry.grading.values`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ...core.errors import UsageError
from ...grading.values import show_value

#: suffixes read as CSV (tab-separated for .tsv) and as JSON Lines; others are told apart by content
CSV_SUFFIXES = (".csv", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


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
