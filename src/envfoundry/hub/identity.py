"""An environment's identity: name, version, package, content hash of its files and of its tasks."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from ..core.env import Environment
from ..core.errors import EnvfoundryError, UsageError
from ..core.loading import folder_loader, is_url
from ..core.provenance import HASH_RULE, content_hash, distribution_version, file_hashes, target_root
from ..core.registry import REGISTRY
from ..core.version import __version__
from .model import Identity

#: task ids hashed per split (the first ones: a procedural source makes tasks in order)
TASKS_SAMPLED = 64
TASKS_RULE = (f"sha256 over '<split>\\t<size>\\n' then '<split>\\t<index>\\t<task id>\\n' for the first "
              f"{TASKS_SAMPLED} tasks (seed 0) of each split, splits in the environment's order")


def tasks_hash(env: Environment) -> tuple[str, dict[str, int]]:
    """(the task-source hash, split -> number of tasks); see :data:`TASKS_RULE`."""
    h = hashlib.sha256()
    sizes: dict[str, int] = {}
    for split in env.splits:
        tasks = env.tasks(split, seed=0)
        sizes[split] = n = len(tasks)
        h.update(f"{split}\t{n}\n".encode())
        for i, t in enumerate(tasks[: min(n, TASKS_SAMPLED)]):
            h.update(f"{split}\t{i}\t{t.id}\n".encode())
    return "sha256:" + h.hexdigest(), sizes


#: what a folder environment's content hash leaves out besides names starting with '.': the default
#: output folders of commands run inside it
FOLDER_OUTPUTS = ("quality/", "runs/")


def _output(top: str) -> bool:
    return top.startswith(".") or f"{top}/" in FOLDER_OUTPUTS


def locate(spec: str) -> tuple[Path, str | None]:
    """(the root of the environment ``spec`` names, the distribution that declares it or None)."""
    target, package = spec, None
    if is_url(spec):
        raise UsageError(f"{spec} is a served environment: make its scorecard where it is served, from its "
                         "name, folder or file (a scorecard hashes the files that define it)")
    if ":" not in spec:
        entry = REGISTRY.entry(spec)
        if entry is None and folder_loader(spec) is not None:  # a declarative folder: its files
            return Path(spec).resolve(), None
        if entry is None:
            raise UsageError(f"unknown environment {spec!r}")
        target, package = entry.target, (entry.source if entry.installed else None)
    root = target_root(target)
    if root is None or not root.exists():
        raise UsageError(f"cannot find the files of environment {spec!r} (target {target!r}): a scorecard hashes "
                         "the package or file that defines it")
    return root, package


def identity(env: Environment, spec: str) -> tuple[Identity, dict[str, int], Path]:
    """The identity of ``env`` (loaded from ``spec``), its split sizes and its root on this machine."""
    root, package = locate(spec)
    files = file_hashes(root)
    folder = package is None and root.is_dir() and folder_loader(str(root)) is not None
    if folder:  # a folder environment: the results kept inside it (quality/, runs/, .git/ ...) are not its content
        files = {rel: h for rel, h in files.items() if not _output(rel.split("/")[0])}
    if not files:
        raise UsageError(f"the root of environment {spec!r} ({root}) holds no files")
    try:
        thash, sizes = tasks_hash(env)
    except EnvfoundryError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's task source may raise anything
        raise UsageError(f"the task source of {env.name!r} raised {type(e).__name__}: {e}") from None
    ident = Identity(
        env=env.name, env_version=env.version, spec=spec, package=package,
        package_version=distribution_version(package) if package else None,
        root=root.name + ("/" if root.is_dir() else ""), content_hash=content_hash(files),
        hash_rule=HASH_RULE + (f", and the folder's {', '.join(FOLDER_OUTPUTS)} and dot-files" if folder else ""),
        files=files, tasks_hash=thash, tasks_rule=TASKS_RULE, envfoundry_version=__version__,
    )
    return ident, sizes, root


def newest_file(root: Path, files: Mapping[str, str]) -> tuple[float, str]:
    """(modification time, relative path) of the newest file the content hash covers."""
    if root.is_file():
        return root.stat().st_mtime, root.name
    best = (0.0, "")
    for rel in files:
        try:
            best = max(best, ((root / rel).stat().st_mtime, rel))
        except OSError:
            continue
    return best


__all__ = ["TASKS_RULE", "TASKS_SAMPLED", "identity", "locate", "newest_file", "tasks_hash"]
