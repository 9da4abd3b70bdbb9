"""Where an environment's code comes from and what it is: its package, version and content hash.

The **content hash** of an environment is a hash of the files of its *root*:

- the root of an environment an installed package declares (``module:factory``) is the folder of
  the module's top-level import package (``my_env/`` for ``my_env.env:make_env``), or the module
  file itself when it is a top-level module; envfoundry's own environments are packages of their
  own (``envfoundry/envs/math/``); the root of an environment file (``file.py:factory``) is the file;
- its files are every regular file under the root except ``__pycache__`` folders, ``*.pyc`` and
  ``*.pyo`` files and the scorecard that ``envfoundry pack`` puts at the root
  (:data:`SCORECARD_FILE`), each named by its path relative to the root with ``/`` separators;
- ``content_hash = "sha256:" + sha256(lines)``, where ``lines`` is, for every file in the sorted
  order of its relative path (by code point), ``<sha256 of the file's bytes, hex>  <relative path>\\n``:
  the output of ``sha256sum`` on the sorted file list, so ``cd ROOT && find . -type f ! -path
  '*/__pycache__/*' ! -name '*.py[co]' ! -path ./envfoundry_scorecard.json | sed 's|^\\./||' |
  LC_ALL=C sort | xargs sha256sum | sha256sum`` gives the same digest.

The same files hash the same in a source tree, in a wheel (:func:`hash_members`) and in
site-packages after ``pip install``, which is what ``envfoundry install`` compares.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from .registry import REGISTRY, is_path_target

#: the scorecard ``envfoundry pack`` writes at an environment's root (left out of its content hash)
SCORECARD_FILE = "envfoundry_scorecard.json"
#: how the content hash is defined, in one line (stored in scorecards beside the hash)
HASH_RULE = ("sha256 over '<sha256 hex>  <path>\\n' lines of the root's files sorted by path (POSIX, relative to "
             f"the root), leaving out __pycache__/, *.pyc, *.pyo and {SCORECARD_FILE}")


def counted(relpath: str) -> bool:
    """Whether a file at ``relpath`` (relative to a root, ``/``-separated) is part of the content hash."""
    parts = PurePosixPath(relpath).parts
    if not parts or "__pycache__" in parts[:-1] or parts[-1].endswith((".pyc", ".pyo")):
        return False
    return relpath != SCORECARD_FILE


def file_hashes(root: str | Path) -> dict[str, str]:
    """``relative path -> sha256 hex`` of the files under ``root`` that the content hash counts (a
    file root: ``{file name: hash}``); sorted by path. Links to files count as the files they reach."""
    root = Path(root)
    if root.is_file():
        return {root.name: _sha256_file(root)}
    out: dict[str, str] = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and counted(rel):
            out[rel] = _sha256_file(p)
    return dict(sorted(out.items()))


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(files: Mapping[str, str]) -> str:
    """The content hash of ``relative path -> sha256 hex`` (see the module documentation)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{files[rel]}  {rel}\n".encode())
    return "sha256:" + h.hexdigest()


def hash_members(members: Iterable[tuple[str, bytes]], prefix: str) -> dict[str, str]:
    """``relative path -> sha256 hex`` of the archive members (``name``, bytes) under ``prefix``
    (a root's path inside a wheel, e.g. ``my_env/``), counted as :func:`file_hashes` counts files."""
    out = {}
    for name, data in members:
        if name.startswith(prefix) and not name.endswith("/"):
            rel = name[len(prefix):]
            if counted(rel):
                out[rel] = hashlib.sha256(data).hexdigest()
    return dict(sorted(out.items()))


def module_root(module: str) -> Path | None:
    """The root of the environment whose factory lives in ``module`` (see the module
    documentation), found without importing the module itself (its parent packages are imported)."""
    parts = module.split(".")
    top = ".".join(parts[:3]) if parts[0] == "envfoundry" and parts[1:2] == ["envs"] and len(parts) >= 3 else parts[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package (a namespace package: the folder that holds the module)
        locations = [Path(x) for x in spec.submodule_search_locations]
        if len(locations) > 1:
            try:
                inner = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                inner = None
            origin = Path(inner.origin) if inner is not None and inner.origin else None
            for loc in locations:
                if origin is not None and origin.is_relative_to(loc):
                    return loc
        return locations[0]
    return Path(spec.origin) if spec.origin and spec.origin not in ("built-in", "frozen") else None


def target_root(target: str) -> Path | None:
    """The root of a ``module:attr`` or ``path/file.py:attr`` target."""
    where = target.rpartition(":")[0]
    if not where:
        return None
    if is_path_target(where):
        p = Path(where)
        return p.resolve() if p.is_file() else None
    return module_root(where)


def distribution_version(name: str) -> str | None:
    """The installed version of the distribution ``name`` (None when it is not installed)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def env_package(spec: str) -> dict[str, str] | None:
    """``{"package", "version", "content_hash"}`` of an environment known by name from an installed
    package (what a run's manifest records), or None for anything else (a file, a ``module:attr``
    spec, a name registered in this process, a root that cannot be found)."""
    if ":" in spec:
        return None
    try:
        entry = REGISTRY.entry(spec)
    except Exception:  # noqa: BLE001 - a name two packages declare: loading reports it
        return None
    if entry is None or not entry.installed:
        return None
    root = target_root(entry.target)
    if root is None or not root.exists():
        return None
    return {"package": entry.source, "version": distribution_version(entry.source) or "unknown",
            "content_hash": content_hash(file_hashes(root))}


__all__ = [
    "HASH_RULE", "SCORECARD_FILE", "content_hash", "counted", "distribution_version", "env_package",
    "file_hashes", "hash_members", "module_root", "target_root",
]
