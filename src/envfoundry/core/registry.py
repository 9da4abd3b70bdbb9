"""The registry of environments known by name.

Names come from two places, and envfoundry's own environments use the first like any package:

- installed packages, through the entry-point group ``envfoundry.environments``
  (``[project.entry-points."envfoundry.environments"] NAME = "package.module:factory"`` in their
  ``pyproject.toml``); read once per process (:meth:`EnvRegistry.refresh` reads again);
- :func:`register_env` in this process (a notebook, a test, a plugin's ``__init__``).

The registry maps a name to its target, ``"module:attr"`` or ``"path/to/file.py:attr"``;
:func:`envfoundry.core.loading.load` imports it. Nothing is imported until an environment is loaded.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EnvLoadError

#: the entry-point group that installed packages declare environments in
GROUP = "envfoundry.environments"
_OWN = "envfoundry"


def is_path_target(target: str) -> bool:
    """Whether the part before ``:`` of a spec is a file path rather than a module name."""
    return target.endswith(".py") or "/" in target or "\\" in target


def check_name(name: str) -> str | None:
    """Why ``name`` cannot name an environment (None when it can)."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        return "a name must be a non-empty string without surrounding spaces"
    if ":" in name or is_path_target(name) or any(c.isspace() for c in name):
        return "a name holds no ':', '/', '\\' or spaces and does not end in .py (those mean a spec)"
    return None


@dataclass(frozen=True, slots=True)
class Entry:
    """One named environment: its target and who declared it (a distribution, or ``register_env``)."""

    name: str
    target: str
    source: str

    @property
    def installed(self) -> bool:
        return self.source != "register_env"


class EnvRegistry(Mapping[str, str]):
    """``name -> target`` of every environment known by name (a read-only mapping; thread-safe).

    Iteration order: envfoundry's own environments, then other packages' (by distribution, then
    name), then those registered in this process, in registration order.
    """

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._lock = threading.Lock()
        self._registered: dict[str, Entry] = {}
        self._installed: dict[str, Entry] | None = None
        self._conflicts: dict[str, list[Entry]] = {}
        self._problems: list[str] = []

    # --------------------------------------------------------------- reading
    def _scan(self) -> dict[str, Entry]:
        with self._lock:
            if self._installed is None:
                self._installed, self._conflicts, self._problems = _scan_entry_points(self.group)
            return self._installed

    def refresh(self) -> None:
        """Read the installed packages' entry points again (after ``pip install`` in this process)."""
        with self._lock:
            self._installed = None

    def entry(self, name: str) -> Entry | None:
        """The entry of ``name`` (None if unknown); a name two packages declare differently is an EnvLoadError."""
        hit = self._registered.get(name)
        if hit is not None:
            return hit
        installed = self._scan()
        if name in self._conflicts:
            who = ", ".join(f"{e.source} ({e.target})" for e in self._conflicts[name])
            raise EnvLoadError(
                f"environment {name!r} is declared by several installed packages: {who}; "
                "load one of them by its module:factory spec"
            )
        return installed.get(name)

    def __getitem__(self, name: str) -> str:
        hit = self.entry(name)
        if hit is None:
            raise KeyError(name)
        return hit.target

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return self.entry(name) is not None
        except EnvLoadError:
            return True

    def _names(self) -> list[str]:
        installed = self._scan()
        own = [n for n, e in installed.items() if e.source == _OWN]
        others = sorted((n for n, e in installed.items() if e.source != _OWN),
                        key=lambda n: (installed[n].source, n))
        names = [*own, *others, *sorted(self._conflicts)]
        return [*[n for n in names if n not in self._registered], *self._registered]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def entries(self) -> list[Entry]:
        """Every entry, in iteration order (a conflicting name: its first declaration)."""
        return [self._registered.get(n) or self._scan().get(n) or self._conflicts[n][0] for n in self._names()]

    def problems(self) -> list[str]:
        """Entry points that were skipped, each with the reason (shown by ``envfoundry list``)."""
        self._scan()
        return list(self._problems)

    def own_missing(self) -> bool:
        """True when envfoundry's own environments are missing from the installed metadata (an
        install older than the entry points, or a source tree on ``PYTHONPATH`` without one)."""
        return not any(e.source == _OWN for e in self._scan().values())

    # --------------------------------------------------------------- writing
    def register(self, name: str, factory: str | Callable[..., Any], *, replace: bool = False) -> Entry:
        """See :func:`register_env`."""
        why = check_name(name)
        if why:
            raise ValueError(f"register_env: {name!r} cannot name an environment: {why}")
        target = _target_of(factory)
        with self._lock:
            clash = self._registered.get(name)
        if clash is None:
            try:
                clash = self.entry(name)
            except EnvLoadError:
                clash = Entry(name, "(several packages)", "installed packages")
        if clash is not None and clash.target != target and not replace:
            raise ValueError(
                f"register_env: environment {name!r} is already {clash.target!r} (from {clash.source}); "
                "pass replace=True to replace it in this process"
            )
        entry = Entry(name, target, "register_env")
        with self._lock:
            self._registered.pop(name, None)
            self._registered[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Forget a name given to :func:`register_env` (installed packages' names stay)."""
        with self._lock:
            self._registered.pop(name, None)


def _target_of(factory: str | Callable[..., Any]) -> str:
    """``factory`` as a target that any process can import: a spec string as it is (a file path
    made absolute), or a module-level callable as ``module:qualname``."""
    if isinstance(factory, str):
        target, sep, attr = factory.rpartition(":")
        if not (sep and target and attr):
            raise ValueError(f"register_env: {factory!r} is not a 'package.module:factory' or 'file.py:factory' spec")
        return f"{Path(target).resolve()}:{attr}" if is_path_target(target) else factory
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not callable(factory) or not module or "<" in qualname:
        raise ValueError(
            f"register_env: {factory!r} is not a module-level function or class; register a "
            "'package.module:factory' spec (worker processes import the factory by that name)"
        )
    mod = inspect.getmodule(factory)
    origin = getattr(mod, "__file__", None)
    if module.startswith("_envfoundry_user_") and origin:  # loaded from a file: name the file
        return f"{Path(origin).resolve()}:{qualname}"
    return f"{module}:{qualname}"


def _group_entry_points(group: str) -> list[tuple[str, Any]]:
    """(distribution, entry point) of ``group``, per distribution name the first copy on the path
    that declares any. Unlike ``entry_points()``, a copy that declares none (a stale
    ``src/*.egg-info`` ahead of the installed metadata, as ``PYTHONPATH=src`` gives) does not hide
    a later one that does."""
    seen: set[str] = set()
    out = []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "an unknown package") if dist.metadata else "an unknown package"
        key = name.lower().replace("_", "-")
        eps = [ep for ep in dist.entry_points if ep.group == group]
        if not eps or key in seen:
            continue
        seen.add(key)
        out += [(name, ep) for ep in eps]
    return out


def _scan_entry_points(group: str) -> tuple[dict[str, Entry], dict[str, list[Entry]], list[str]]:
    found: dict[str, list[Entry]] = {}
    problems: list[str] = []
    for dist, ep in _group_entry_points(group):
        why = check_name(ep.name)
        if why:
            problems.append(f"{dist}: entry point {ep.name!r} skipped: {why}")
            continue
        value = ep.value.split("[", 1)[0].strip()  # extras ("module:attr [extra]") are pip's business
        target, sep, attr = value.partition(":")
        if not (sep and target.strip() and attr.strip()):
            problems.append(f"{dist}: entry point {ep.name!r} = {ep.value!r} skipped: not 'package.module:factory'")
            continue
        entry = Entry(ep.name, f"{target.strip()}:{attr.strip()}", dist)
        same = found.setdefault(ep.name, [])
        if all(e.target != entry.target for e in same):  # the same package twice on the path is one entry
            same.append(entry)
    installed = {n: es[0] for n, es in found.items() if len(es) == 1}
    conflicts = {n: es for n, es in found.items() if len(es) > 1}
    return installed, conflicts, problems


#: the process's registry; ``BUILTIN`` in :mod:`envfoundry.envs` is this object
REGISTRY = EnvRegistry()


def register_env(name: str, factory: str | Callable[..., Any], *, replace: bool = False) -> None:
    """Make ``name`` load ``factory`` in this process, as if an installed package declared it.

    ``factory``: a ``"package.module:factory"`` or ``"path/to/file.py:factory"`` spec, or a
    module-level function or class (recorded as ``module:qualname``, so worker processes import it
    too). A name already taken (by an installed package or an earlier call) is refused unless
    ``replace=True``. Names hold no ``:``, ``/`` or spaces.
    """
    REGISTRY.register(name, factory, replace=replace)


__all__ = ["GROUP", "REGISTRY", "EnvRegistry", "Entry", "check_name", "is_path_target", "register_env"]
