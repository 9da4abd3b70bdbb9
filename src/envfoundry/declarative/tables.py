"""Tables of the world: typed columns, rows checked on every write, rows read from CSV or JSON files.

A row is a plain dict of JSON values; its key (the ``key`` column's value, as text) names it in the
:class:`~envfoundry.World`. Types: ``string``, ``integer``, ``number``, ``boolean``, ``date``
(``2024-03-31``), ``enum`` (one of ``values``), ``list``, ``record`` and ``any``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeclarativeError, Loc
from .functions import show, type_name
from .models import ColumnSpec, ParamSpec, TableSpec
from .source import LDict, LList, inside, read_csv, read_json

NO_DEFAULT = object()
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FORM_NAMES = {"count", "sum", "any", "all", "filter", "map", "first", "last", "sorted", "min_by", "max_by", "exists",
               "times", "get", "rows", "next_key"}
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


class TypeMismatch(ValueError):
    """A value that does not fit its column or parameter; the message reads after its name."""


@dataclass(frozen=True)
class Column:
    """A typed slot: a table's column or a parameter."""

    name: str
    type: str
    values: tuple[Any, ...] = ()
    nullable: bool = False
    default: Any = NO_DEFAULT
    ref: str | None = None
    loc: Loc = field(default_factory=lambda: Loc("?"))
    low: float | None = None
    high: float | None = None

    @property
    def required(self) -> bool:
        return not self.nullable and self.default is NO_DEFAULT

    def describe(self) -> str:
        """The type in words: ``a number``, ``one of 'open', 'closed'``."""
        if self.type == "enum":
            return "one of " + ", ".join(repr(v) for v in self.values)
        return {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
                "date": "a date like 2024-03-31", "list": "a list", "record": "a record",
                "any": "any value"}[self.type]

    def coerce(self, v: Any, *, text: bool = False) -> Any:
        """``v`` as this column's value (``text``: it came from a CSV cell); TypeMismatch if it cannot be."""
        if text and isinstance(v, str):
            v = _from_text(self, v)
        if v is None:
            if self.nullable:
                return None
            if self.default is not NO_DEFAULT:
                return self.default
            raise TypeMismatch(f"expects {self.describe()}, got nothing")
        t = self.type
        if t == "string":
            if isinstance(v, str):
                return v
            if isinstance(v, int) and not isinstance(v, bool):
                return str(v)  # an account code written 1000
        elif t == "integer":
            if isinstance(v, int) and not isinstance(v, bool):
                return self._ranged(v)
            if isinstance(v, float) and v.is_integer():
                return self._ranged(int(v))
        elif t == "number":
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                return self._ranged(v)
        elif t == "boolean":
            if isinstance(v, bool):
                return v
        elif t == "date":
            if isinstance(v, str) and len(v) == 10:
                try:
                    _dt.date.fromisoformat(v)
                    return v
                except ValueError:
                    pass
        elif t == "enum":
            for allowed in self.values:
                if v == allowed or (isinstance(v, (int, str)) and str(v) == str(allowed)):
                    return allowed
        elif t == "list":
            if isinstance(v, (list, tuple)):
                return [_plain(x) for x in v]
        elif t == "record":
            if isinstance(v, Mapping):
                return {str(k): _plain(x) for k, x in v.items()}
        else:
            return _plain(v)
        raise TypeMismatch(f"expects {self.describe()}, got {show(v)}")

    def _ranged(self, v: float | int) -> float | int:
        if self.low is not None and v < self.low:
            raise TypeMismatch(f"must be at least {self.low:g}, got {v!r}")
        if self.high is not None and v > self.high:
            raise TypeMismatch(f"must be at most {self.high:g}, got {v!r}")
        return v


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeMismatch(f"expects plain data, got {type_name(v)}")


def _from_text(c: Column, s: str) -> Any:
    raw = s.strip()
    if raw == "":
        return None
    t = c.type
    try:
        if t == "integer":
            return int(raw)
        if t == "number":
            v = float(raw)
            return int(v) if raw.lstrip("+-").isdigit() else v
        if t == "boolean":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            return raw
        if t in ("list", "record", "any"):
            return json.loads(raw)
    except ValueError:
        return raw  # coerce() says what is wrong with it
    return s if t == "string" else raw


def column_of(name: str, spec: Any, loc: Loc) -> Column:
    """A :class:`Column` from a column or parameter spec (a type name, or its mapping)."""
    if isinstance(spec, str):
        if spec == "enum":
            raise DeclarativeError(loc, f"{name!r}: an enum needs its values ({{type: enum, values: [a, b]}})")
        return Column(name, spec, loc=loc)
    assert isinstance(spec, (ColumnSpec, ParamSpec))
    values = tuple(spec.values or ())
    if spec.type == "enum" and not values:
        raise DeclarativeError(loc, f"{name!r}: an enum needs its values ({{type: enum, values: [a, b]}})")
    if spec.type != "enum" and values:
        raise DeclarativeError(loc, f"{name!r}: `values` lists the members of an enum, but the type is {spec.type}")
    nullable = spec.nullable if isinstance(spec, ColumnSpec) else spec.optional
    has_default = "default" in spec.model_fields_set
    col = Column(name, spec.type, values, nullable, spec.default if has_default else NO_DEFAULT,
                 getattr(spec, "ref", None), loc, getattr(spec, "min", None), getattr(spec, "max", None))
    if has_default and spec.default is not None:
        try:
            col.coerce(spec.default)
        except TypeMismatch as e:
            raise DeclarativeError(loc, f"{name!r}: the default {e}") from None
    return col


@dataclass
class Table:
    """A table's schema and where it was declared."""

    name: str
    key: str
    columns: dict[str, Column]
    readonly: bool
    loc: Loc
    spec: TableSpec

    def row(self, values: Mapping[str, Any], *, where: str, partial: bool = False) -> dict[str, Any]:
        """``values`` checked and completed (defaults, nulls); a TypeMismatch names the column."""
        out: dict[str, Any] = {}
        for k in values:
            if k not in self.columns:
                raise TypeMismatch(f"{where}: table {self.name!r} has no column {k!r} "
                                   f"(columns: {', '.join(self.columns)})")
        for name, col in self.columns.items():
            if name in values:
                try:
                    out[name] = col.coerce(values[name])
                except TypeMismatch as e:
                    raise TypeMismatch(f"{where}: column {name!r} {e}") from None
            elif not partial:
                if col.required:
                    raise TypeMismatch(f"{where}: column {name!r} of table {self.name!r} needs a value")
                out[name] = None if col.default is NO_DEFAULT else col.default
        if not partial and out.get(self.key) is None:
            raise TypeMismatch(f"{where}: the key column {self.key!r} of table {self.name!r} needs a value")
        return out

    def key_of(self, row: Mapping[str, Any]) -> str:
        return key_text(row.get(self.key))


def key_text(v: Any) -> str:
    """A key as the world stores it: text (a whole number is written without decimals)."""
    if isinstance(v, bool) or v is None:
        raise TypeMismatch(f"a key is text or a whole number, got {show(v)}")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float, str)):
        return str(v)
    raise TypeMismatch(f"a key is text or a whole number, got {type_name(v)}")


def make_tables(specs: Mapping[str, TableSpec], raw: Any) -> dict[str, Table]:
    from .library import FUNCTIONS, RANDOM

    out: dict[str, Table] = {}
    for name, spec in specs.items():
        loc = raw.at(name) if isinstance(raw, LDict) else spec.at()
        if not _IDENT.match(name):
            raise DeclarativeError(loc, f"table name {name!r} must be letters, digits and '_', starting with a letter")
        if name in FUNCTIONS or name in RANDOM or name in _FORM_NAMES:
            raise DeclarativeError(loc, f"table name {name!r} is the name of a function; choose another")
        craw = spec.raw("columns")
        for c in spec.columns:
            if not _IDENT.match(c):
                raise DeclarativeError(craw.at(c) if isinstance(craw, LDict) else loc,
                                       f"column name {c!r} must be letters, digits and '_', starting with a letter")
        cols = {c: column_of(c, s, spec.at("columns") if not isinstance(spec.raw("columns"), LDict)
                             else spec.raw("columns").at(c)) for c, s in spec.columns.items()}
        if spec.key not in cols:
            raise DeclarativeError(spec.at("key"), f"table {name!r}: the key {spec.key!r} is not one of its columns "
                                   f"({', '.join(cols)})")
        if cols[spec.key].type not in ("string", "integer", "enum", "date"):
            raise DeclarativeError(spec.at("key"), f"table {name!r}: the key column {spec.key!r} must be text, a "
                                   f"date or a whole number, not {cols[spec.key].type}")
        out[name] = Table(name, spec.key, cols, spec.readonly, loc, spec)
    for t in out.values():
        for c in t.columns.values():
            if c.ref is not None and c.ref not in out:
                raise DeclarativeError(c.loc, f"column {c.name!r} of table {t.name!r} refers to unknown table "
                                       f"{c.ref!r} (tables: {', '.join(out)})")
    return out


# ------------------------------------------------------------------ data files
def load_data(folder: Path, tables: Mapping[str, Table]) -> dict[str, dict[str, dict[str, Any]]]:
    """The rows of every table that has a data file (``data:``, or ``data/TABLE.csv``/``.json``)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    locs: dict[tuple[str, str], Loc] = {}
    for t in tables.values():
        rel = t.spec.data
        if rel is None:
            for ext in ("csv", "json"):
                if (folder / "data" / f"{t.name}.{ext}").is_file():
                    rel = f"data/{t.name}.{ext}"
                    break
        if rel is None:
            continue
        path = inside(folder, rel, t.spec.at("data") if t.spec.data else t.loc)
        if not path.is_file():
            raise DeclarativeError(t.spec.at("data"), f"table {t.name!r}: data file {rel!r} does not exist")
        if path.suffix.lower() == ".csv":
            out[t.name] = _csv_rows(t, path, rel, locs)
        elif path.suffix.lower() == ".json":
            out[t.name] = _json_rows(t, path, rel, locs)
        else:
            raise DeclarativeError(t.spec.at("data"), f"table {t.name!r}: data file {rel!r} must be .csv or .json")
    check_refs(tables, out, lambda table, key: locs.get((table, key), Loc(f"data/{table}")))
    return out


def _add(t: Table, rows: dict[str, dict[str, Any]], row: dict[str, Any], loc: Loc,
         locs: dict[tuple[str, str], Loc]) -> None:
    k = t.key_of(row)
    if k in rows:
        raise DeclarativeError(loc, f"table {t.name!r}: key {k!r} appears twice")
    rows[k] = row
    locs[(t.name, k)] = loc


def _csv_rows(t: Table, path: Path, rel: str, locs: dict[tuple[str, str], Loc]) -> dict[str, dict[str, Any]]:
    header, lines = read_csv(path, rel)
    for h in header:
        if h not in t.columns:
            raise DeclarativeError(Loc(rel, 1), f"table {t.name!r} has no column {h!r} (columns: "
                                   f"{', '.join(t.columns)})")
    missing = [c.name for c in t.columns.values() if c.required and c.name not in header]
    if missing:
        raise DeclarativeError(Loc(rel, 1), f"the header lacks column(s) {', '.join(map(repr, missing))} of table "
                               f"{t.name!r}")
    rows: dict[str, dict[str, Any]] = {}
    for line, cells in lines:
        values: dict[str, Any] = {}
        for name, cell in cells.items():
            try:
                values[name] = t.columns[name].coerce(cell, text=True)
            except TypeMismatch as e:
                raise DeclarativeError(Loc(rel, line), f"column {name!r} {e}") from None
        try:
            row = t.row(values, where="row")
        except TypeMismatch as e:
            raise DeclarativeError(Loc(rel, line), str(e).removeprefix("row: ")) from None
        _add(t, rows, row, Loc(rel, line), locs)
    return rows


def _json_rows(t: Table, path: Path, rel: str, locs: dict[tuple[str, str], Loc]) -> dict[str, dict[str, Any]]:
    doc = read_json(path, rel)
    items: list[tuple[Any, Loc]] = []
    if isinstance(doc, list):
        items = [(r, doc.at(i) if isinstance(doc, LList) else Loc(rel)) for i, r in enumerate(doc)]
    elif isinstance(doc, Mapping):
        for k, r in doc.items():
            if isinstance(r, Mapping) and t.key not in r:
                r = {**r, t.key: k}
            items.append((r, doc.at(k) if isinstance(doc, LDict) else Loc(rel)))
    else:
        raise DeclarativeError(Loc(rel, 1), f"table {t.name!r}: a JSON data file holds a list of rows or a "
                               "mapping of key -> row")
    rows: dict[str, dict[str, Any]] = {}
    for r, loc in items:
        if not isinstance(r, Mapping):
            raise DeclarativeError(loc, f"a row of table {t.name!r} is a mapping of column -> value, got "
                                   f"{type_name(r)}")
        try:
            row = t.row(dict(r), where="row")
        except TypeMismatch as e:
            line = r.at(_culprit(str(e), r)) if isinstance(r, LDict) else loc
            raise DeclarativeError(line, str(e).removeprefix("row: ")) from None
        _add(t, rows, row, loc, locs)
    return rows


def _culprit(msg: str, r: Mapping[str, Any]) -> str:
    for k in r:
        if f"column {k!r}" in msg:
            return str(k)
    return ""


def check_refs(tables: Mapping[str, Table], data: Mapping[str, Mapping[str, Mapping[str, Any]]],
               where: Any) -> None:
    """Every ``ref`` column holds a key of its table (or null)."""
    for t in tables.values():
        for c in t.columns.values():
            if c.ref is None:
                continue
            target = data.get(c.ref, {})
            for k, row in data.get(t.name, {}).items():
                v = row.get(c.name)
                if v is not None and key_text(v) not in target:
                    raise DeclarativeError(where(t.name, k), f"column {c.name!r} of table {t.name!r} row {k!r} "
                                           f"holds {v!r}, which is not a key of table {c.ref!r}")


__all__ = ["NO_DEFAULT", "Column", "Table", "TypeMismatch", "check_refs", "column_of", "key_text", "load_data",
           "make_tables"]
