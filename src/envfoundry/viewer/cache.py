"""Where the viewer keeps run indexes: a few in memory, all on disk in a cache folder outside every
run (the viewer never writes into a run store), built in a background thread."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson

from ..rollout.store import TRAJECTORIES, RunManifest
from . import index as _index
from .index import RunIndex


def cache_dir() -> Path | None:
    """Where indexes are kept: ``$ENVFOUNDRY_CACHE_DIR/view``, else the user's cache folder
    (``$XDG_CACHE_HOME`` or ``~/.cache``)``/envfoundry/view``, else a folder in the temporary
    directory; None when none of them can be written (the index then lives in memory only)."""
    env = os.environ.get("ENVFOUNDRY_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tries = [Path(env) / "view"] if env else []
    tries += [Path(xdg) / "envfoundry" / "view", Path(tempfile.gettempdir()) / f"envfoundry-view-{os.getuid()}"]
    for d in tries:
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    return None



class IndexCache:
    """Indexes of the runs being viewed: a few in memory, all on disk in :func:`cache_dir`; built
    in a background thread so that a page can say how far along a large one is."""

    def __init__(self, folder: Path | None, keep: int = 8) -> None:
        self.folder = folder
        self.keep = keep
        self._mem: OrderedDict[Path, RunIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Path, tuple[threading.Thread, dict[str, Any]]] = {}

    def _disk(self, tp: Path) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / (hashlib.sha256(str(tp).encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".npz")

    def _load(self, tp: Path) -> RunIndex | None:
        d = self._disk(tp)
        if d is None or not d.is_file():
            return None
        try:
            ix = RunIndex.from_bytes(d.read_bytes())
        except (OSError, ValueError, KeyError, orjson.JSONDecodeError):
            return None
        return ix if ix.file == tp else None

    def _save(self, ix: RunIndex) -> None:
        d = self._disk(ix.file)
        if d is None:
            return
        tmp = d.with_name(f".{d.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            d.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp.write_bytes(ix.to_bytes())
            os.replace(tmp, d)
        except OSError:  # a full or read-only cache: the index stays in memory
            tmp.unlink(missing_ok=True)

    def peek(self, run_dir: Path, disk: bool = True) -> RunIndex | None:
        """The index of ``run_dir`` if one is in memory (or, with ``disk``, in the cache folder) and
        still matches the file; nothing is built."""
        tp = run_dir / TRAJECTORIES
        try:
            st = tp.stat()
        except OSError:
            return None
        with self._lock:
            ix = self._mem.get(tp)
        if ix is None and disk:
            ix = self._load(tp)
        if ix is not None and ix.fingerprint() == (st.st_size, st.st_mtime_ns, st.st_ino):
            self._remember(ix)
            return ix
        return None

    def _remember(self, ix: RunIndex) -> None:
        with self._lock:
            self._mem[ix.file] = ix
            self._mem.move_to_end(ix.file)
            while len(self._mem) > self.keep:
                self._mem.popitem(last=False)

    def get(self, run_dir: Path, manifest: RunManifest, wait_s: float | None = None) -> tuple[RunIndex | None, int]:
        """(the index, 0) once it matches the file; (None, bytes read so far) while a build of a
        large file is still going after ``wait_s`` seconds (None: wait for it)."""
        ready = self.peek(run_dir)
        if ready is not None:
            return ready, 0
        tp = run_dir / TRAJECTORIES
        with self._lock:
            job = self._building.get(tp)
            if job is None:
                prev = self._mem.get(tp) or self._load(tp)
                done: dict[str, Any] = {"read": 0, "index": None, "error": None}
                t = threading.Thread(target=self._build, args=(run_dir, manifest, prev, done), daemon=True,
                                     name=f"index {run_dir.name}")
                job = self._building[tp] = (t, done)
                t.start()
        job[0].join(wait_s)
        if job[0].is_alive():
            return None, job[1]["read"]
        if job[1]["error"] is not None:
            raise job[1]["error"]
        return job[1]["index"], 0

    def _build(self, run_dir: Path, manifest: RunManifest, prev: RunIndex | None, done: dict[str, Any]) -> None:
        tp = run_dir / TRAJECTORIES
        try:
            ix = _index.build(run_dir, manifest, prev, progress=lambda n: done.__setitem__("read", n))
            self._remember(ix)
            done["index"] = ix
            self._save(ix)
        except BaseException as e:  # noqa: BLE001 - handed to the request that waits for it
            done["error"] = e
        finally:
            with self._lock:
                self._building.pop(tp, None)
