"""What the served folders hold: run stores, audits, calibrations, check results and scorecards.

Folders are walked without following links, hidden folders and virtual environments skipped, to
a bounded depth and number of folders. A run's manifest is read once per change of the file; its
figures come from its index when one is at hand, else from its ``summary.json`` when that is newer
than its records, else from a fresh index.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import EnvfoundryError
from ..rollout.store import MANIFEST, SUMMARY, TRAJECTORIES, RunManifest, RunStore
from .cache import IndexCache
from .index import RunIndex
from .roots import Outside, Roots

MAX_DEPTH = 8
MAX_FOLDERS = 20_000
_SKIP = frozenset({"node_modules", "__pycache__", "site-packages", "server-logs"})
_ROUND = re.compile(r"round-\d+")
AUDIT_FILE = "audit.json"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_STATE = "state.json"
#: stored check results: ``envfoundry check ENV --json > quality/ENV/check.json`` (the scorecard reads the same)
_CHECK = re.compile(r"check.*\.json")
SCORECARD_FILES = ("scorecard.json", "scorecard.html")


@dataclass
class Found:
    """The outputs found under the served folders (resolved paths, sorted)."""

    runs: list[Path] = field(default_factory=list)
    audits: list[Path] = field(default_factory=list)
    calibrations: list[Path] = field(default_factory=list)
    checks: list[Path] = field(default_factory=list)  # check*.json files
    scorecards: list[Path] = field(default_factory=list)  # scorecard.json / .html files
    kind: dict[Path, str] = field(default_factory=dict)  # run -> "run" | "audit" | "calibration"
    truncated: bool = False


def _holds(path: Path, *needles: bytes) -> bool:
    """Whether the first 64 KiB of ``path`` hold every needle (a marker file of ours, not another program's)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return all(n in head for n in needles)


def _looks_like_run(manifest: Path) -> bool:
    return _holds(manifest, b'"env_version"', b'"task_ids"')


def discover(roots: Roots) -> Found:
    found = Found()
    seen_dirs = 0
    for root in roots.paths:
        base_depth = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            seen_dirs += 1
            here = Path(dirpath)
            depth = len(here.parts) - base_depth
            names = set(filenames)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP)
            if depth >= MAX_DEPTH:
                dirnames[:] = []
            if seen_dirs >= MAX_FOLDERS:
                found.truncated = True
                dirnames[:] = []
            if MANIFEST in names and roots.file(here, MANIFEST) and _looks_like_run(here / MANIFEST):
                found.runs.append(here)
                parent = set(os.listdir(here.parent)) if here != root else set()
                if AUDIT_FILE in parent or here.name == "baseline-noop" or here.name.startswith("probe-"):
                    found.kind[here] = "audit"
                elif _ROUND.fullmatch(here.name) and ({CALIBRATION_FILE, CALIBRATION_STATE} & parent):
                    found.kind[here] = "calibration"
                else:
                    found.kind[here] = "run"
                dirnames[:] = []
                continue
            if AUDIT_FILE in names and roots.file(here, AUDIT_FILE):
                found.audits.append(here)
            if (CALIBRATION_FILE in names and roots.file(here, CALIBRATION_FILE)) or (
                    CALIBRATION_STATE in names and any(_ROUND.fullmatch(d) for d in dirnames)):
                found.calibrations.append(here)
            found.checks += [here / n for n in sorted(names) if _CHECK.fullmatch(n) and roots.file(here, n)
                             and _holds(here / n, b'"checks"')]
            found.scorecards += [here / n for n in SCORECARD_FILES if n in names and roots.file(here, n)]
    for lst in (found.runs, found.audits, found.calibrations, found.checks, found.scorecards):
        lst[:] = sorted(dict.fromkeys(lst))
    return found


@dataclass
class RunInfo:
    """A run as the list shows it."""

    path: Path
    manifest: RunManifest | None
    error: str | None = None
    summary: dict[str, Any] | None = None
    indexing: int | None = None  # bytes read so far while its index is being built


class Catalog:
    """The served folders with their manifests and indexes."""

    def __init__(self, roots: Roots, cache: IndexCache) -> None:
        self.roots = roots
        self.cache = cache
        self._manifests: dict[Path, tuple[tuple[int, int], RunManifest | str]] = {}
        self._lock = threading.Lock()

    def manifest(self, run_dir: Path) -> RunManifest:
        """The run's manifest (a damaged or foreign one: :class:`EnvfoundryError`)."""
        mf = self.roots.file(run_dir, MANIFEST)
        if mf is None:
            raise Outside(str(run_dir))
        st = mf.stat()
        key = (st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._manifests.get(run_dir)
        if hit is None or hit[0] != key:
            try:
                value: RunManifest | str = RunStore.open(run_dir).manifest
            except EnvfoundryError as e:
                value = str(e)
            with self._lock:
                self._manifests[run_dir] = (key, value)
        else:
            value = hit[1]
        if isinstance(value, str):
            raise EnvfoundryError(value)
        return value

    def run_dir(self, ref: str) -> Path:
        """The run store that ``I/REL`` names (:class:`Outside` when it is not one inside the served folders)."""
        p = self.roots.resolve(ref)
        if not p.is_dir() or self.roots.file(p, MANIFEST) is None:
            raise Outside(ref)
        return p

    def index(self, run_dir: Path, wait_s: float | None = 1.0) -> tuple[RunIndex | None, int]:
        """The run's index, or (None, bytes read) while a large one is still being built."""
        m = self.manifest(run_dir)
        tp = run_dir / TRAJECTORIES
        if tp.exists() and self.roots.file(run_dir, TRAJECTORIES) is None:  # a link that leads out
            raise Outside(str(tp))
        return self.cache.get(run_dir, m, wait_s=wait_s)

    def info(self, run_dir: Path, wait_s: float = 0.5) -> RunInfo:
        """The run's manifest and figures for the list (see the module docstring)."""
        try:
            m = self.manifest(run_dir)
        except (EnvfoundryError, OSError, Outside) as e:
            return RunInfo(run_dir, None, error=str(e) or type(e).__name__)
        ix = self.cache.peek(run_dir, disk=False)
        if ix is not None:
            return RunInfo(run_dir, m, summary=ix.summary(m.samples))
        stored = self._stored_summary(run_dir)  # a finished run's: cheaper than reading its index
        if stored is not None:
            return RunInfo(run_dir, m, summary=stored)
        try:
            ix, read = self.index(run_dir, wait_s=wait_s)
        except (EnvfoundryError, OSError, Outside) as e:
            return RunInfo(run_dir, m, error=str(e) or type(e).__name__)
        if ix is None:
            return RunInfo(run_dir, m, indexing=read)
        return RunInfo(run_dir, m, summary=ix.summary(m.samples))

    def _stored_summary(self, run_dir: Path) -> dict[str, Any] | None:
        """``summary.json`` when it was written after the last record (a finished run), else None."""
        sp = self.roots.file(run_dir, SUMMARY)
        tp = run_dir / TRAJECTORIES
        if sp is None:
            return None
        try:
            if tp.exists() and tp.stat().st_mtime_ns > sp.stat().st_mtime_ns:
                return None
            return RunStore(run_dir, self.manifest(run_dir)).summary()
        except (EnvfoundryError, OSError):
            return None
