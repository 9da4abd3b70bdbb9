"""Files written whole or not at all, and output folders: the one home of both for every part.

A failure to write (a full disk, a read-only file system) is the machine's fault: an ``OSError``
of the errno's own subclass, naming the path (exit code 1). A path that cannot be a folder as given
(under a file, too long) is the user's input: a :class:`~envfoundry.core.errors.StoreError` (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload

from .errors import StoreError

#: errnos of a path that cannot be a directory as given (the user's input, exit 2); any other
#: failure to make one (a full disk, a read-only file system, no permission) is the machine's
PATH_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL})


def ensure_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create ``path`` (and its parents) as a directory. A path that cannot be one (under a file,
    too long) is a StoreError (the user's input); a machine's failure (a full disk, a read-only
    file system, no permission) an OSError naming the path (exit 1)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise StoreError(f"{what} {str(p)!r} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in PATH_ERRNOS:
            raise StoreError(f"cannot create {what} {str(p)!r}: {e.strerror or e}") from None
        raise OSError(e.errno, e.strerror, str(p)) from None
    return p


@overload
def atomic_writer(path: str | Path, mode: Literal["w"] = "w") -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_writer(path: str | Path, mode: Literal["wb"]) -> contextlib.AbstractContextManager[IO[bytes]]: ...
def atomic_writer(path: str | Path, mode: str = "w") -> contextlib.AbstractContextManager[IO[Any]]:
    """``with atomic_writer(path) as f: f.write(...)``: what is written replaces ``path`` only when
    the block ends without an error (a temporary file beside it, synced, then renamed). On any
    failure the old file is kept as it was and the temporary file is removed; an OSError (also one
    raised by a writer such as pyarrow, whose errno may only be in its message) becomes an OSError
    of the errno's own subclass naming ``path``. Text is UTF-8; text that cannot be encoded (a lone
    surrogate) is written escaped, never a crash."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer: mode must be 'w' or 'wb', got {mode!r}")
    return _atomic(Path(path), mode)


@contextlib.contextmanager
def _atomic(path: Path, mode: str) -> Iterator[IO[Any]]:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if mode == "w":
            f: IO[Any] = open(tmp, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        else:
            f = open(tmp, "wb")  # noqa: SIM115
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        code = e.errno if e.errno is not None else errno_in(str(e))
        why = e.strerror or (os.strerror(code) if code else " ".join(str(e).split()))
        raise OSError(code, why, str(path)) from None  # the errno's own subclass
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``path`` whole or not at all (see :func:`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (see :func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def errno_in(message: str) -> int | None:
    """The errno in a message such as pyarrow's ``[Errno 28] Error writing bytes ...``."""
    m = re.search(r"\[Errno (\d+)\]|errno (\d+)", message)
    if m:
        return int(m.group(1) or m.group(2))
    return errno.ENOSPC if "No space left" in message else None


__all__ = ["PATH_ERRNOS", "atomic_write_bytes", "atomic_write_text", "atomic_writer", "ensure_dir", "errno_in"]


#: writer locks this process holds: the folder's (device, inode) -> [descriptor, holders]
_LOCKS: dict[tuple[int, int], list[int]] = {}


def lock_folder(folder: str | Path) -> None:
    """Take this process's writer lock on an output folder (``flock`` on the folder itself, so no
    file is added and a killed process releases it), or raise :class:`StoreError` when another
    process holds it: two processes appending to one run store would interleave their records.
    Re-entrant within a process; every call is matched by :func:`unlock_folder`."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (Windows is not a supported platform)
        return
    p = Path(folder)
    st = p.stat()
    key = (st.st_dev, st.st_ino)
    held = _LOCKS.get(key)
    if held is not None:
        held[1] += 1
        return
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{str(p)!r} is being written by another envfoundry process; wait for it to finish "
                         "(or stop it) before resuming or replacing it") from None
    except OSError:  # a file system without locks: go on unlocked rather than refuse every write
        os.close(fd)
        return
    _LOCKS[key] = [fd, 1]


def unlock_folder(folder: str | Path) -> None:
    """Give back one hold of :func:`lock_folder` (the lock is released with the last)."""
    try:
        st = Path(folder).stat()
    except OSError:
        return
    held = _LOCKS.get((st.st_dev, st.st_ino))
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _LOCKS[(st.st_dev, st.st_ino)]
        os.close(held[0])  # closing the descriptor releases the flock


def is_locked_elsewhere(folder: str | Path) -> bool:
    """True when another process holds the writer lock of ``folder`` (this process's own holds don't count)."""
    try:
        lock_folder(folder)
    except StoreError:
        return True
    except OSError:
        return False
    unlock_folder(folder)
    return False
