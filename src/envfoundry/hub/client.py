"""The hub's clients: ``publish`` (the legacy upload API, as twine speaks it), ``install`` (pip, then the
published content hash checked) and the reads behind ``hub list`` and ``hub show``.

Exit codes: the hub refusing an upload (no or wrong token, a version already published, a bad file)
and unknown packages are the user's (:class:`UsageError`, exit 2); a hub that cannot be reached or
fails, and files that do not match what was published (:class:`IntegrityError`), exit 1.
"""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.errors import EnvfoundryError, UsageError
from ..core.provenance import content_hash, hash_members
from .model import PackageCard
from .pack import describe

DEFAULT_TOKEN_ENV = "ENVFOUNDRY_HUB_TOKEN"
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([A-Za-z0-9._+!-]+))?\s*$")


class HubError(EnvfoundryError):
    """The hub cannot be reached or failed (exit 1)."""


class IntegrityError(EnvfoundryError):
    """Downloaded or installed files differ from what the hub published (exit 1)."""


def hub_base(hub: str) -> str:
    try:
        ok = re.match(r"^https?://[^/\s]+", hub or "") is not None and bool(urlsplit(hub).hostname)
        urlsplit(hub).port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--hub {hub!r} is not an http(s) URL (e.g. http://127.0.0.1:8700)")
    return hub.rstrip("/")


async def _call(method: str, url: str, **kw: Any) -> tuple[int, bytes]:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s, \
                s.request(method, url, **kw) as r:
            return r.status, await r.read()
    except (TimeoutError, aiohttp.ClientConnectionError, OSError) as e:
        raise HubError(f"cannot reach the hub at {url}: {type(e).__name__}: {e}") from None


def get_json(hub: str, path: str, *, missing: str | None = None) -> Any:
    """GET ``hub + path`` as JSON; 404 is a UsageError saying ``missing`` (default: the hub's message)."""
    url = hub_base(hub) + path
    status, body = asyncio.run(_call("GET", url))
    if status == 404:
        try:
            detail = json.loads(body).get("detail")
        except (ValueError, AttributeError):
            detail = None
        raise UsageError(missing or detail or f"not found on the hub: {url}")
    if status != 200:
        raise HubError(f"the hub answered {status} to GET {url}: {body[:300].decode('utf-8', 'replace')}")
    try:
        return json.loads(body)
    except ValueError:
        raise HubError(f"the hub's answer to GET {url} is not JSON: is {hub} an envfoundry hub?") from None


# ------------------------------------------------------------------------ publish
def find_dist(dist: Path | None) -> Path:
    """The file to publish: ``dist`` itself, or the newest wheel in it (default ``./dist``)."""
    p = Path(dist) if dist is not None else Path("dist")
    if p.is_dir():
        wheels = sorted(p.glob("*.whl"), key=lambda x: x.stat().st_mtime)
        if not wheels:
            raise UsageError(f"no wheel in {str(p)!r}: run `envfoundry pack` first, or give the file")
        return wheels[-1]
    if not p.is_file():
        raise UsageError(f"{str(p)!r} does not exist: give a wheel (or a folder holding one)")
    return p


def _wheel_metadata(p: Path) -> dict[str, str]:
    try:
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise UsageError(f"{p.name} is not a wheel: it has {len(names)} .dist-info/METADATA files")
            msg = email.parser.Parser().parsestr(z.read(names[0]).decode("utf-8", "replace"), headersonly=True)
    except zipfile.BadZipFile:
        raise UsageError(f"{p} is not a wheel (not a zip file)") from None
    return {k: str(v) for k, v in msg.items()}


def publish(dist: Path, hub: str, token: str | None, *, token_env: str = DEFAULT_TOKEN_ENV) -> str:
    """Upload ``dist`` with the legacy upload API; the hub's answer, or an error saying why it refused."""
    import aiohttp

    base = hub_base(hub)
    data = dist.read_bytes()
    form = aiohttp.FormData()
    fields = {":action": "file_upload", "protocol_version": "1", "sha256_digest": hashlib.sha256(data).hexdigest()}
    if dist.name.endswith(".whl"):
        meta = _wheel_metadata(dist)
        fields |= {"name": meta.get("Name", ""), "version": meta.get("Version", ""), "filetype": "bdist_wheel",
                   "pyversion": dist.name.split("-")[-3], "metadata_version": meta.get("Metadata-Version", "")}
    else:
        fields |= {"filetype": "sdist", "pyversion": "source"}
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("content", data, filename=dist.name, content_type="application/octet-stream")
    auth = aiohttp.BasicAuth("__token__", token) if token else None
    status, body = asyncio.run(_call("POST", base + "/", data=form, auth=auth))
    text = body.decode("utf-8", "replace").strip()
    if status == 200:
        return text
    if status in (401, 403):
        how = f"{token_env} is not set" if not token else f"the token in {token_env} is not the hub's"
        raise UsageError(f"the hub refused the upload ({status}): {text}; {how}")
    if status in (400, 405, 409, 413):
        raise UsageError(f"the hub refused {dist.name} ({status}): {text}")
    raise HubError(f"the hub failed on {dist.name} ({status}): {text[:500]}")


# ------------------------------------------------------------------------ install
def parse_requirement(req: str) -> tuple[str, str | None]:
    m = _REQ.match(req or "")
    if m is None:
        raise UsageError(f"{req!r}: give NAME or NAME==VERSION (the hub installs exact, published versions)")
    return m.group(1), m.group(2)


def choose(entry: dict[str, Any], version: str | None) -> dict[str, Any]:
    """The published version asked for (PEP 440 equal), or the newest."""
    from packaging.utils import canonicalize_version

    versions = entry.get("versions") or []
    if not versions:
        raise UsageError(f"{entry.get('package')} has no published version")
    if version is None:
        return versions[-1]
    for v in versions:
        if canonicalize_version(v["version"]) == canonicalize_version(version):
            return v
    have = ", ".join(v["version"] for v in versions)
    raise UsageError(f"{entry.get('package')} {version} is not published on the hub (versions: {have})")


def verify_download(path: Path, published: dict[str, Any]) -> None:
    """The downloaded file is the one published: its sha256, and (named) the environment's files."""
    card = PackageCard.model_validate(published["card"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        with zipfile.ZipFile(path) as z:
            files = hash_members(((n, z.read(n)) for n in z.namelist() if n.startswith(card.root)), card.root)
    except zipfile.BadZipFile:
        raise IntegrityError(f"the downloaded {path.name} is not a wheel (sha256 {digest}, published "
                             f"{published['sha256']})") from None
    if files != card.files or content_hash(files) != card.content_hash:
        raise IntegrityError(f"refusing {path.name}: its files do not match the published content hash "
                             f"{card.content_hash}: {describe(card.files, files, card.root)}")
    if digest != published["sha256"]:
        raise IntegrityError(f"refusing {path.name}: the file differs from the one published (sha256 {digest}, "
                             f"published {published['sha256']}), though the environment's files match")


_INSTALLED = """
import importlib.util, json, sys
from pathlib import Path
from envfoundry.core.provenance import file_hashes
spec = importlib.util.find_spec(sys.argv[1])
root = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
print(json.dumps({"root": str(root) if root else None, "files": file_hashes(root) if root else {}}))
"""


def _pip(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "pip", *args, "--disable-pip-version-check"], capture_output=True,
                          text=True)


def _last_lines(text: str, n: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


def install(requirement: str, hub: str, *, python: str | None = None, no_deps: bool = False,
            on_step: Any = None) -> dict[str, Any]:
    """Download the published wheel with pip from the hub's simple index, check it against the
    published scorecard, install it with pip and check the installed files (see the module docs)."""
    base = hub_base(hub)
    python = python or sys.executable
    name, version = parse_requirement(requirement)
    entry = get_json(base, f"/api/packages/{name}", missing=f"no package or environment {name!r} on the hub {base}")
    chosen = choose(entry, version)
    published = get_json(base, f"/api/packages/{entry['name']}/{chosen['version']}")
    if not published.get("card"):
        raise UsageError(f"{entry['package']} {chosen['version']} was published without a scorecard: there is no "
                         "content hash to check its files against")
    card = PackageCard.model_validate(published["card"])
    say = on_step or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="envfoundry-install-") as tmp:
        say(f"downloading {entry['package']}=={chosen['version']} from {base}/simple/")
        # --isolated: no extra index from pip's configuration can supply a file of the same name and version
        r = _pip(python, "download", f"{entry['name']}=={chosen['version']}", "--no-deps", "--only-binary=:all:",
                 "--index-url", f"{base}/simple/", "--dest", tmp, "--no-cache-dir", "-q", "--isolated")
        if r.returncode != 0:
            raise HubError(f"pip could not download {entry['package']} {chosen['version']}: "
                           f"{_last_lines(r.stderr or r.stdout)}")
        got = sorted(Path(tmp).glob("*.whl"))
        if len(got) != 1:
            raise HubError(f"pip downloaded {[p.name for p in Path(tmp).iterdir()]}, not one wheel")
        say(f"checking {got[0].name} against the published content hash {card.content_hash}")
        verify_download(got[0], published)
        say(f"installing {got[0].name} with {python} -m pip")
        # the checked file itself, even over an installed copy of the same version; then its dependencies
        steps = [["--no-deps", "--no-index", "--force-reinstall"]] + ([] if no_deps else [[]])
        for extra in steps:
            r = _pip(python, "install", str(got[0]), "-q", "--no-cache-dir", *extra)
            if r.returncode != 0:
                raise HubError(f"pip could not install {got[0].name}: {_last_lines(r.stderr or r.stdout)}")
    top = card.root.rstrip("/")
    r = subprocess.run([python, "-c", _INSTALLED, top], capture_output=True, text=True)
    if r.returncode != 0:
        raise IntegrityError(f"installed {entry['package']} {chosen['version']}, but its files could not be checked "
                             f"with {python}: {_last_lines(r.stderr)}")
    found = json.loads(r.stdout)
    if found["files"] != card.files:
        raise IntegrityError(f"{python} imports {top!r} from {found['root']}, whose files do not match the published "
                             f"content hash: {describe(card.files, found['files'], card.root)} (does another copy "
                             "come first on its path?)")
    return {"package": entry["package"], "version": chosen["version"], "file": chosen["filename"],
            "content_hash": card.content_hash, "root": found["root"], "python": python,
            "environments": [c.identity.env for c in card.scorecards]}


__all__ = ["DEFAULT_TOKEN_ENV", "HubError", "IntegrityError", "choose", "find_dist", "get_json", "hub_base", "install",
           "parse_requirement", "publish", "verify_download"]
