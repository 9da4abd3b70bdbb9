"""World state: tables of records with copy-on-write forks, field-level diffs and a stable hash.

A world is a shared, never-mutated *root* (the initial tables) plus a private *overlay* of the
records this world changed. Forking copies only the overlay, so its cost grows with what a rollout
changed, not with the size of the world. Records are never mutated in place: a write stores a new
dict, so forks can share record objects safely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .task import canonical_json

Record = dict[str, Any]
_DELETED: Any = None  # overlay marker for a deleted record
_MISSING_VALUE: Any = object()  # World.value's default: raise when absent
_MOD = 1 << 128


def _record_hash(table: str, key: str, record: Mapping[str, Any]) -> int:
    data = canonical_json([table, key, dict(record)]).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


@dataclass(slots=True, frozen=True)
class Change:
    """One field-level difference. ``field`` is None for a whole-record insert or delete."""

    op: str  # "insert" | "delete" | "update"
    table: str
    key: str
    field: str | None
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "table": self.table,
            "key": self.key,
            "field": self.field,
            "before": self.before,
            "after": self.after,
        }


class _Root:
    __slots__ = ("tables", "_hash")

    def __init__(self, tables: dict[str, dict[str, Record]]):
        self.tables = tables
        self._hash: int | None = None

    def hash(self) -> int:
        if self._hash is None:
            h = 0
            for t, rows in self.tables.items():
                for k, r in rows.items():
                    h = (h + _record_hash(t, k, r)) % _MOD
            self._hash = h
        return self._hash


class World:
    """Tables of records keyed by string. Read with :meth:`get`/:meth:`rows`, write with
    :meth:`insert`/:meth:`update`/:meth:`delete`; :meth:`fork` for an isolated copy.

    Single named values (a counter, a balance) need no table of their own: ``World(values={"c": 3})``,
    ``world.value("c")``, ``world.set_value("c", 5)``. They are the records of the table
    :attr:`VALUES` (``values[c] = {"value": 3}``), so diffs, hashes and graders see them as any record.
    """

    __slots__ = ("_root", "_overlay")

    #: the table that holds :meth:`value`/:meth:`set_value`'s named values, one record each
    VALUES = "values"

    def __init__(self, tables: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None, *,
                 values: Mapping[str, Any] | None = None):
        if values:
            if tables and World.VALUES in tables:
                raise ValueError(f"World: give named values in values= or in table {World.VALUES!r}, not both")
            tables = {**(tables or {}), World.VALUES: {str(k): {"value": v} for k, v in values.items()}}
        root: dict[str, dict[str, Record]] = {}
        for t, rows in (tables or {}).items():
            root[str(t)] = {}
            for k, r in rows.items():
                if not isinstance(k, str):
                    raise TypeError(f"world table {t!r}: keys must be str, got {k!r}")
                root[str(t)][k] = dict(r)
        self._root = _Root(root)
        self._overlay: dict[str, dict[str, Record | None]] = {}

    # ----------------------------------------------------------------- reading
    def tables(self) -> list[str]:
        """Tables of the initial world, plus tables this world created that hold records."""
        extra = {t for t, ov in self._overlay.items() if t not in self._root.tables and any(
            r is not None for r in ov.values())}
        return sorted(set(self._root.tables) | extra)

    def get(self, table: str, key: str) -> Mapping[str, Any] | None:
        """The record (read-only view), or None if absent."""
        ov = self._overlay.get(table)
        if ov is not None and key in ov:
            r = ov[key]
            return None if r is None else MappingProxyType(r)
        r = self._root.tables.get(table, {}).get(key)
        return None if r is None else MappingProxyType(r)

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self.get(*item) is not None

    def keys(self, table: str) -> Iterator[str]:
        ov = self._overlay.get(table, {})
        for k in self._root.tables.get(table, {}):
            if k not in ov:
                yield k
        for k, r in ov.items():
            if r is not None:
                yield k

    def rows(self, table: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(key, record) pairs; root order first, then records this world added."""
        ov = self._overlay.get(table, {})
        base = self._root.tables.get(table, {})
        for k, r in base.items():
            if k in ov:
                o = ov[k]
                if o is not None:
                    yield k, MappingProxyType(o)
            else:
                yield k, MappingProxyType(r)
        for k, o in ov.items():
            if k not in base and o is not None:
                yield k, MappingProxyType(o)

    def count(self, table: str) -> int:
        return sum(1 for _ in self.keys(table))

    def value(self, name: str, default: Any = _MISSING_VALUE) -> Any:
        """The named value ``name`` (see the class docstring); ``default`` when absent, else KeyError."""
        r = self.get(World.VALUES, name)
        if r is None:
            if default is _MISSING_VALUE:
                known = ", ".join(self.keys(World.VALUES)) or "none"
                raise KeyError(f"the world has no value {name!r} (values: {known})")
            return default
        return r.get("value")

    def set_value(self, name: str, value: Any) -> None:
        """Set (or create) the named value ``name``."""
        self._put(World.VALUES, str(name), {"value": value})

    # ----------------------------------------------------------------- writing
    def _put(self, table: str, key: str, record: Record | None) -> None:
        self._overlay.setdefault(table, {})[key] = record

    def insert(self, table: str, key: str, record: Mapping[str, Any]) -> None:
        if not isinstance(key, str):
            raise TypeError(f"world table {table!r}: keys must be str, got {key!r}")
        if self.get(table, key) is not None:
            raise KeyError(f"{table}[{key!r}] already exists")
        self._put(table, key, dict(record))

    def update(self, table: str, key: str, **fields: Any) -> None:
        cur = self.get(table, key)
        if cur is None:
            raise KeyError(f"{table}[{key!r}] does not exist")
        new = dict(cur)
        new.update(fields)
        self._put(table, key, new)

    def upsert(self, table: str, key: str, record: Mapping[str, Any]) -> None:
        self._put(table, key, dict(record))

    def delete(self, table: str, key: str) -> None:
        if self.get(table, key) is None:
            raise KeyError(f"{table}[{key!r}] does not exist")
        self._put(table, key, _DELETED)

    # ----------------------------------------------------------- fork and diff
    def fork(self) -> World:
        """An isolated copy: writes to either side are invisible to the other."""
        w = World.__new__(World)
        w._root = self._root
        w._overlay = {t: dict(ov) for t, ov in self._overlay.items()}
        return w

    def shares_root(self, other: World) -> bool:
        """Whether both are forks of one initial world: their diff then costs what they changed, not the
        world's size (a served environment sends a big world once, then each episode's changes to it)."""
        return other._root is self._root

    def _changed_keys(self, other: World) -> Iterator[tuple[str, str]]:
        if other._root is self._root:
            seen: set[tuple[str, str]] = set()
            for w in (self, other):
                for t, ov in w._overlay.items():
                    for k in ov:
                        if (t, k) not in seen:
                            seen.add((t, k))
                            yield t, k
        else:
            for t in set(self.tables()) | set(other.tables()):
                for k in dict.fromkeys([*self.keys(t), *other.keys(t)]):
                    yield t, k

    def diff(self, other: World) -> list[Change]:
        """Changes that turn ``self`` into ``other``, field by field, sorted for stability."""
        out: list[Change] = []
        for t, k in self._changed_keys(other):
            a, b = self.get(t, k), other.get(t, k)
            if a is None and b is None:
                continue
            if a is None:
                out.append(Change("insert", t, k, None, None, dict(b or {})))
            elif b is None:
                out.append(Change("delete", t, k, None, dict(a), None))
            elif a != b:
                for f in sorted(set(a) | set(b)):
                    va, vb = a.get(f, _MISSING), b.get(f, _MISSING)
                    if va != vb:
                        out.append(
                            Change(
                                "update", t, k, f,
                                None if va is _MISSING else va,
                                None if vb is _MISSING else vb,
                            )
                        )
        out.sort(key=lambda c: (c.table, c.key, c.field or ""))
        return out

    def apply(self, changes: list[Change]) -> None:
        """Apply a diff (as produced by :meth:`diff`) to this world."""
        for c in changes:
            if c.op == "insert":
                self.upsert(c.table, c.key, c.after)
            elif c.op == "delete":
                self.delete(c.table, c.key)
            else:
                cur = dict(self.get(c.table, c.key) or {})
                if c.after is None:
                    cur.pop(c.field or "", None)
                else:
                    cur[c.field or ""] = c.after
                self._put(c.table, c.key, cur)

    # ------------------------------------------------------ hashing, snapshots
    def hash(self) -> str:
        """Content hash: equal for equal contents, however the world was built."""
        h = self._root.hash()
        for t, ov in self._overlay.items():
            base = self._root.tables.get(t, {})
            for k, r in ov.items():
                if k in base:
                    h -= _record_hash(t, k, base[k])
                if r is not None:
                    h += _record_hash(t, k, r)
        return f"{h % _MOD:032x}"

    def to_json(self) -> dict[str, dict[str, Record]]:
        """A full snapshot as plain JSON-able data (``World(snapshot)`` restores it)."""
        return {t: {k: dict(r) for k, r in self.rows(t)} for t in self.tables()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, World) and not self.diff(other)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{t}={self.count(t)}" for t in self.tables())
        return f"World({sizes})"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
