"""The hub's folder: the published files (which pypiserver lists) and one record per published version.

``DIR/*.whl`` (and sdists) are the files pip downloads; ``DIR/.envfoundry/NAME/VERSION.json`` records
each published version: its file, the file's sha256, when it was uploaded and the scorecard the
wheel carried (pypiserver lists no folder whose name starts with a dot). A version is published
once: any later upload of the same project and version (PEP 440 equal: ``1.0`` is ``1.0.0``) is
refused, whatever its file name, and so is a file name already in the folder.
"""

from __future__ import annotations

import datetime as _dt
import email.parser
import hashlib
import io
import json
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.errors import reason
from ..core.provenance import SCORECARD_FILE, content_hash, hash_members
from .model import PackageCard
from .pack import describe

RECORDS = ".envfoundry"


class UploadRefused(Exception):
    """An upload the hub does not take, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    filename: str
    data: bytes
    sha256_digest: str | None = None
    name: str | None = None
    version: str | None = None


def _names() -> Any:
    try:
        from packaging import utils
    except ImportError:  # pragma: no cover - build depends on packaging
        raise UploadRefused(500, 'the hub needs the `packaging` package: pip install "envfoundry[hub]"') from None
    return utils


def parse_filename(filename: str) -> tuple[str, str, bool]:
    """(canonical project name, version, is a wheel) of a distribution file name; UploadRefused(400) if it is none."""
    u = _names()
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise UploadRefused(400, f"bad file name {filename!r}")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = u.parse_wheel_filename(filename)
            return str(name), str(version), True
        name, version = u.parse_sdist_filename(filename)
        return str(name), str(version), False
    except (u.InvalidWheelFilename, u.InvalidSdistFilename, ValueError) as e:
        raise UploadRefused(400, f"{filename!r} is not a wheel or sdist file name: {e}") from None


def read_card(z: zipfile.ZipFile, filename: str) -> PackageCard | None:
    """The scorecard a wheel carries at its root, checked against the wheel's own files; None without one."""
    names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/" + SCORECARD_FILE)]
    if not names:
        return None
    if len(names) > 1:
        raise UploadRefused(400, f"{filename} carries several scorecards: {', '.join(names)}")
    try:
        card = PackageCard.model_validate_json(z.read(names[0]))
    except ValidationError as e:
        raise UploadRefused(400, f"{filename}: {names[0]} is not a scorecard: {reason(e)}") from None
    prefix = names[0][: -len(SCORECARD_FILE)]
    if card.root != prefix:
        raise UploadRefused(400, f"{filename}: the scorecard describes root {card.root!r} but lies in {prefix!r}")
    files = hash_members(((n, z.read(n)) for n in z.namelist() if n.startswith(prefix)), prefix)
    if files != card.files or content_hash(files) != card.content_hash:
        raise UploadRefused(400, f"{filename}: the files do not match its scorecard's content hash: "
                            f"{describe(card.files, files, prefix)}")
    return card


class HubIndex:
    """The published files and records in ``root`` (thread-safe for uploads)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.records = self.root / RECORDS
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- reading
    def projects(self) -> list[str]:
        if not self.records.is_dir():
            return []
        return sorted(p.name for p in self.records.iterdir() if p.is_dir() and any(p.glob("*.json")))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every published version of ``name`` (any spelling), oldest first, each a record."""
        from packaging.version import InvalidVersion, Version

        folder = self.records / str(_names().canonicalize_name(name))
        out = []
        for p in folder.glob("*.json") if folder.is_dir() else []:
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue

        def key(r: dict[str, Any]) -> Any:
            try:
                return (0, Version(str(r.get("version"))))
            except InvalidVersion:
                return (1, str(r.get("version")))

        return sorted(out, key=key)

    def resolve(self, name: str) -> str | None:
        """The canonical project name of ``name``: a project, or else the package that declares an environment
        of that name (the newest version that does); None when neither is on the hub."""
        canon = str(_names().canonicalize_name(name))
        if canon in self.projects():
            return canon
        for project in self.projects():
            for rec in reversed(self.versions(project)):
                cards = (rec.get("card") or {}).get("scorecards") or []
                if any(c.get("identity", {}).get("env") == name for c in cards):
                    return project
        return None

    def record(self, name: str, version: str) -> dict[str, Any] | None:
        u = _names()
        key = _version_key(version)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+!-]*", key):
            return None
        p = self.records / str(u.canonicalize_name(name)) / f"{key}.json"
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # ----------------------------------------------------------------- writing
    def publish(self, up: Upload) -> dict[str, Any]:
        """Store an upload; UploadRefused (400 bad file, 409 already published) says why not."""
        name, version, is_wheel = parse_filename(up.filename)
        u = _names()
        digest = hashlib.sha256(up.data).hexdigest()
        if up.sha256_digest and up.sha256_digest.lower() != digest:
            raise UploadRefused(400, f"{up.filename}: sha256_digest {up.sha256_digest} does not match the file "
                                f"({digest}): the upload was damaged")
        if up.name and u.canonicalize_name(up.name) != name:
            raise UploadRefused(400, f"the form says project {up.name!r}, the file name {name!r}")
        card = None
        display = name
        if is_wheel:
            try:
                z = zipfile.ZipFile(io.BytesIO(up.data))
                meta = _metadata(z, up.filename)
                card = read_card(z, up.filename)
            except zipfile.BadZipFile:
                raise UploadRefused(400, f"{up.filename} is not a zip file (a wheel is one)") from None
            display = meta.get("Name") or name
            if u.canonicalize_name(display) != name or _version_key(meta.get("Version", "")) != _version_key(version):
                raise UploadRefused(400, f"{up.filename}: its METADATA says {meta.get('Name')} {meta.get('Version')}, "
                                    "not what its file name says")
            if card is not None and (u.canonicalize_name(card.package) != name
                                     or _version_key(card.version) != _version_key(version)):
                raise UploadRefused(400, f"{up.filename}: its scorecard is of {card.package} {card.version}")
        record = {"package": display, "name": name, "version": version, "filename": up.filename, "sha256": digest,
                  "size": len(up.data), "uploaded_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                  "card": card.model_dump(mode="json") if card is not None else None}
        folder = self.records / name
        rec_path = folder / f"{_version_key(version)}.json"
        target = self.root / up.filename
        with self._lock:
            old = self.record(name, version)
            if old is not None:
                raise UploadRefused(409, f"{display} {version} is already published ({old.get('filename')}, "
                                    f"{old.get('uploaded_at')}); a published version is never replaced: publish a "
                                    "new version")
            if target.exists():
                raise UploadRefused(409, f"{up.filename} is already on the hub; a published file is never replaced")
            folder.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{up.filename}.{os.getpid()}.tmp"
            tmp.write_bytes(up.data)
            try:
                os.link(tmp, target)  # fails if the file appeared meanwhile: never replaced
            except FileExistsError:
                raise UploadRefused(409, f"{up.filename} is already on the hub") from None
            finally:
                tmp.unlink(missing_ok=True)
            try:  # another server on the same folder may have published this version meanwhile
                with open(rec_path, "x", encoding="utf-8") as f:
                    json.dump(record, f, indent=2)
            except FileExistsError:
                target.unlink(missing_ok=True)
                raise UploadRefused(409, f"{display} {version} is already published") from None
        return record


def _version_key(version: str) -> str:
    """A version's canonical spelling (``1.0.0`` -> ``1``), so that equal versions share one record."""
    return str(_names().canonicalize_version(version))


def _metadata(z: zipfile.ZipFile, filename: str) -> dict[str, str]:
    metas = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if len(metas) != 1:
        raise UploadRefused(400, f"{filename} has {len(metas)} .dist-info/METADATA files, not one")
    msg = email.parser.Parser().parsestr(z.read(metas[0]).decode("utf-8", "replace"), headersonly=True)
    return {k: str(v) for k, v in msg.items()}


__all__ = ["RECORDS", "HubIndex", "Upload", "UploadRefused", "parse_filename", "read_card"]
