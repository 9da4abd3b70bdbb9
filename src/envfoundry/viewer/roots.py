"""The folders the viewer serves, and the one check every path from a URL passes through.

A location in a URL is ``I/REL``: the served folder number ``I`` and a path relative to it. It is
joined to that folder and resolved (``..`` collapsed, symbolic links followed), and refused unless
what it names lies inside the folder: ``../``, its percent-encoded forms, an absolute path, a NUL
byte or a link that leads out all end in the same :class:`Outside` (a 404 that does not say whether
the path exists). The viewer never writes inside a served folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import UsageError


class Outside(LookupError):
    """A location that is not inside a served folder (or does not exist)."""


class Roots:
    """The served folders, resolved once (a folder given twice is served once)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        roots: list[Path] = []
        for p in paths or ["."]:
            path = Path(p)
            if not path.exists():
                raise UsageError(f"{str(p)!r} does not exist: give folders that hold runs or quality results")
            if not path.is_dir():
                raise UsageError(f"{str(p)!r} is not a folder: give folders that hold runs or quality results")
            real = path.resolve()
            if real not in roots:
                roots.append(real)
        self.paths: tuple[Path, ...] = tuple(roots)

    def label(self, i: int) -> str:
        return str(self.paths[i])

    def resolve(self, ref: str) -> Path:
        """The path that ``I/REL`` names, resolved; :class:`Outside` unless it lies inside folder I."""
        head, _, rel = ref.partition("/")
        if not head.isdigit() or int(head) >= len(self.paths) or "\x00" in rel:
            raise Outside(ref)
        root = self.paths[int(head)]
        if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
            raise Outside(ref)
        try:
            target = (root / rel).resolve()
        except (OSError, RuntimeError, ValueError):  # a link loop, a name too long
            raise Outside(ref) from None
        if target != root and not target.is_relative_to(root):
            raise Outside(ref)
        return target

    def inside(self, path: Path) -> Path:
        """``path`` resolved, if it lies inside a served folder, else :class:`Outside`."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):
            raise Outside(str(path)) from None
        if any(real == r or real.is_relative_to(r) for r in self.paths):
            return real
        raise Outside(str(path))

    def ref(self, path: Path) -> str:
        """The ``I/REL`` of a resolved path inside a served folder (the innermost folder that holds it)."""
        best: tuple[int, int] | None = None
        for i, r in enumerate(self.paths):
            if path == r or path.is_relative_to(r):
                depth = len(r.parts)
                if best is None or depth > best[1]:
                    best = (i, depth)
        if best is None:
            raise Outside(str(path))
        rel = path.relative_to(self.paths[best[0]]).as_posix()
        return f"{best[0]}/{'' if rel == '.' else rel}"

    def file(self, folder: Path, name: str) -> Path | None:
        """``folder/name`` if it is a regular file inside a served folder (links followed and checked), else None."""
        try:
            p = self.inside(folder / name)
        except Outside:
            return None
        return p if p.is_file() else None

    def show(self, path: Path) -> str:
        """A short name for a path inside the served folders: relative to its folder (with the
        folder's name when several are served)."""
        try:
            i, _, rel = self.ref(path).partition("/")
        except Outside:
            return str(path)
        base = self.paths[int(i)].name if len(self.paths) > 1 else ""
        return "/".join(x for x in (base, rel) if x) or self.paths[int(i)].name or "/"
