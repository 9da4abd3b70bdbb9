"""Reading the files of a folder with line numbers: YAML (and JSON) documents and CSV tables.

YAML is read with a safe loader of our own: only plain data (mappings, lists, strings, numbers,
true/false, null; anchors and merge keys), no tags that build objects, duplicate keys refused.
Scalars follow YAML 1.2: ``yes``/``no``/``on``/``off`` and ``2024-03-31`` stay strings, numbers
with leading zeros too (an account code ``0100`` is text). Mappings and lists come back as
:class:`LDict` and :class:`LList`, which remember the line of every key and item, so a problem
found later can still name ``tasks.yaml:42``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import DeclarativeError, Loc

MAX_FILE_BYTES = 50 * 1024 * 1024


class LDict(dict):  # noqa: FURB189 - a dict that remembers lines
    """A mapping read from a file: ``loc`` is where it starts, ``lines[key]`` the line of each key."""

    loc: Loc
    lines: dict[str, int]

    def at(self, key: str) -> Loc:
        return Loc(self.loc.file, self.lines.get(key, self.loc.line))


class LList(list):  # noqa: FURB189
    """A list read from a file: ``loc`` is where it starts, ``lines[i]`` the line of each item."""

    loc: Loc
    lines: list[int]

    def at(self, i: int) -> Loc:
        return Loc(self.loc.file, self.lines[i] if 0 <= i < len(self.lines) else self.loc.line)


def loc_of(doc: Any, path: tuple[Any, ...] | list[Any], default: Loc) -> Loc:
    """The line of the deepest part of ``path`` (keys and indexes) that ``doc`` holds."""
    loc = getattr(doc, "loc", default)
    cur = doc
    for part in path:
        if isinstance(cur, LDict) and isinstance(part, str) and part in cur:
            loc, cur = cur.at(part), cur[part]
        elif isinstance(cur, LList) and isinstance(part, int) and 0 <= part < len(cur):
            loc, cur = cur.at(part), cur[part]
        # anything else (a union member's name in pydantic's path) is skipped
    return loc


# ------------------------------------------------------------------ YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: no yes/no booleans, no dates, no sexagesimal numbers."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _re, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)\.[0-9]*)(?:[eE][-+]?[0-9]+)?$"
                                r"|^[-+]?(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+$", "-+0123456789."),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_re), list(_first))

_SCALAR_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null")}
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _tag_error(node: yaml.Node, file: str) -> DeclarativeError:
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    return DeclarativeError(Loc(file, node.start_mark.line + 1),
                            f"the YAML tag {tag!r} is not allowed: a declarative folder holds plain data "
                            "(mappings, lists, text, numbers, true/false, null)")


MAX_VALUES = 1_000_000  # values a document may hold once its aliases are expanded


class _Converter:
    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader, self.file = loader, file
        self.done: dict[int, Any] = {}  # anchors: one object per node (no exponential copies)
        self.sizes: dict[int, int] = {}

    def size(self, node: yaml.Node) -> int:
        """How many values ``node`` holds with its aliases expanded (what a reader walking it visits)."""
        hit = self.sizes.get(id(node))
        if hit is not None:
            if hit < 0:
                raise DeclarativeError(Loc(self.file, node.start_mark.line + 1),
                                       "an alias (*name) refers to a mapping or list that holds it (a cycle)")
            return hit
        self.sizes[id(node)] = -1  # in progress: meeting it again is a cycle
        if isinstance(node, yaml.SequenceNode):
            n = 1 + sum(self.size(x) for x in node.value)
        elif isinstance(node, yaml.MappingNode):
            n = 1 + sum(self.size(k) + self.size(v) for k, v in node.value)
        else:
            n = 1
        self.sizes[id(node)] = n
        return n

    def convert(self, node: yaml.Node) -> Any:
        hit = self.done.get(id(node))
        if hit is not None:
            return hit
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                raise _tag_error(node, self.file)
            return self.loader.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise _tag_error(node, self.file)
            out = LList()
            out.loc, out.lines = Loc(self.file, line), []
            self.done[id(node)] = out
            for item in node.value:
                out.append(self.convert(item))
                out.lines.append(item.start_mark.line + 1)
            return out
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise _tag_error(node, self.file)
            try:
                self.loader.flatten_mapping(node)  # merge keys (<<: *base)
            except yaml.MarkedYAMLError as e:
                raise _yaml_error(e, self.file) from None
            d = LDict()
            d.loc, d.lines = Loc(self.file, line), {}
            self.done[id(node)] = d
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise DeclarativeError(Loc(self.file, knode.start_mark.line + 1),
                                           "a mapping key must be plain text, not a list or a mapping")
                if knode.tag not in _SCALAR_TAGS:
                    raise _tag_error(knode, self.file)
                key = str(knode.value)  # the key as written: `1000:` is the text "1000"
                kline = knode.start_mark.line + 1
                if key in d:
                    raise DeclarativeError(Loc(self.file, kline),
                                           f"duplicate key {key!r} (first on line {d.lines[key]})")
                d[key] = self.convert(vnode)
                d.lines[key] = kline
            return d
        raise _tag_error(node, self.file)  # pragma: no cover - the composer makes only these


def _yaml_error(e: yaml.MarkedYAMLError, file: str) -> DeclarativeError:
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark is not None else 0
    what = " ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
    return DeclarativeError(Loc(file, line), f"invalid YAML: {what}")


def read_bytes(path: Path, rel: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DeclarativeError(Loc(rel), f"the file is {size} bytes; at most {MAX_FILE_BYTES} are read")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DeclarativeError(Loc(rel), f"the file is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DeclarativeError(Loc(rel), f"cannot read the file: {e.strerror or e}") from None


def parse_yaml(text: str, rel: str) -> Any:
    """One YAML document of ``text`` as LDict/LList/scalars (an empty document is None)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        conv = _Converter(loader, rel)
        if conv.size(node) > MAX_VALUES:
            raise DeclarativeError(Loc(rel, 1), f"the document holds more than {MAX_VALUES} values once its "
                                   "aliases (*name) are expanded")
        return conv.convert(node)
    except yaml.MarkedYAMLError as e:
        raise _yaml_error(e, rel) from None
    except yaml.YAMLError as e:
        raise DeclarativeError(Loc(rel), f"invalid YAML: {e}") from None
    except RecursionError:
        raise DeclarativeError(Loc(rel), "the document is nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: Path, rel: str) -> Any:
    return parse_yaml(read_bytes(path, rel), rel)


def read_json(path: Path, rel: str) -> Any:
    """A JSON file, with line numbers where the YAML reader can follow it."""
    text = read_bytes(path, rel)
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        raise DeclarativeError(Loc(rel, e.lineno), f"invalid JSON: {e.msg}") from None
    except RecursionError:
        raise DeclarativeError(Loc(rel), "the document is nested too deeply") from None
    try:
        return parse_yaml(text, rel)
    except DeclarativeError:
        return json.loads(text)  # valid JSON that YAML reads differently (tabs): no line numbers


def read_csv(path: Path, rel: str) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and ``(line, row)`` pairs of a CSV file (cells are text; typing is the table's job)."""
    text = read_bytes(path, rel)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DeclarativeError(Loc(rel, 1), "the CSV file is empty (it needs a header row)") from None
    except csv.Error as e:
        raise DeclarativeError(Loc(rel, 1), f"invalid CSV: {e}") from None
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for h in header:
        if not h:
            raise DeclarativeError(Loc(rel, 1), "the header has an empty column name")
        if h in seen:
            raise DeclarativeError(Loc(rel, 1), f"the header names column {h!r} twice")
        seen.add(h)

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        start = reader.line_num + 1
        try:
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise DeclarativeError(Loc(rel, line), f"the row has {len(cells)} cells, the header "
                                           f"{len(header)}")
                yield line, dict(zip(header, cells, strict=True))
        except csv.Error as e:
            raise DeclarativeError(Loc(rel, reader.line_num), f"invalid CSV: {e}") from None

    return header, rows()


def inside(folder: Path, rel: str, loc: Loc) -> Path:
    """``folder / rel``, refused when it leaves the folder (an absolute path, ``..``, a link out)."""
    if not rel or Path(rel).is_absolute() or rel.startswith(("~", "\\")):
        raise DeclarativeError(loc, f"path {rel!r} must be relative to the environment folder")
    root = folder.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise DeclarativeError(loc, f"path {rel!r} leaves the environment folder")
    return path


__all__ = ["LDict", "LList", "inside", "loc_of", "parse_yaml", "read_csv", "read_json", "read_yaml"]
