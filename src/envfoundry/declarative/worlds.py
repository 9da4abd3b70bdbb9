"""The two worlds expressions read: a generator's world being built (plain dicts, written by steps)
and an episode's :class:`~envfoundry.World` (read by tools and graders, written by tool effects)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.world import World
from .tables import Table, TypeMismatch


class DictWorld:
    """A world under construction: ``tables[name][key] = row``; writes check each row against its table."""

    def __init__(self, tables: Mapping[str, Table], rows: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        self.schema = tables
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: dict(rows.get(t, {})) for t in tables}

    def rows(self, table: str) -> list[Mapping[str, Any]]:
        return list(self.tables[table].values())

    def get(self, table: str, key: str) -> Mapping[str, Any] | None:
        return self.tables[table].get(key)

    def keys(self, table: str) -> list[str]:
        return list(self.tables[table])

    def insert(self, table: str, values: Mapping[str, Any], key: Any, where: str) -> dict[str, Any]:
        t = self.schema[table]
        row = t.row(values, where=where)
        k = t.key_of(row) if key is None else _key(key)
        if k in self.tables[table]:
            raise TypeMismatch(f"{where}: table {table!r} already has a row with key {k!r}")
        self.tables[table][k] = row
        return row

    def update(self, table: str, key: str, values: Mapping[str, Any], where: str) -> None:
        cur = self.tables[table].get(key)
        if cur is None:
            raise TypeMismatch(f"{where}: table {table!r} has no row with key {key!r}")
        new = {**cur, **self.schema[table].row(values, where=where, partial=True)}
        self.tables[table][key] = new

    def delete(self, table: str, key: str, where: str) -> None:
        if self.tables[table].pop(key, None) is None:
            raise TypeMismatch(f"{where}: table {table!r} has no row with key {key!r}")

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {t: dict(rows) for t, rows in self.tables.items()}


class EpisodeWorld:
    """An episode's :class:`World`, read through the expression interface."""

    __slots__ = ("world",)

    def __init__(self, world: World) -> None:
        self.world = world

    def rows(self, table: str) -> list[Mapping[str, Any]]:
        return [r for _, r in self.world.rows(table)]

    def get(self, table: str, key: str) -> Mapping[str, Any] | None:
        return self.world.get(table, key)

    def keys(self, table: str) -> list[str]:
        return list(self.world.keys(table))


def _key(v: Any) -> str:
    from .tables import key_text

    return key_text(v)


__all__ = ["DictWorld", "EpisodeWorld"]
