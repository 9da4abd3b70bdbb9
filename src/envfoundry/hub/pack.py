"""``envfoundry pack``: a wheel of an environment package with its scorecard inside.

The project must be installed (``pip install -e DIR``), so that its environments load by name from
DIR's own files; their scorecards are built from the stored results (``--run-missing`` runs check
and audit first). Packing is refused, naming why, when a check or audit is missing or stale, when a
check fails or the audit has an ``exploit`` finding (``allow_findings`` lets the last two through
and the scorecard records them). The scorecard (:class:`~.model.PackageCard`) is written at the
environment's root for the build and removed after it; the wheel is built by the project's own
build backend through the standard ``build`` package, and then checked: its files must hash to the
scorecard's content hash (a backend that leaves a file out is named).
"""

from __future__ import annotations

import datetime as _dt
import sys
import tomllib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import EnvfoundryError, UsageError
from ..core.provenance import SCORECARD_FILE, content_hash, distribution_version, hash_members, target_root
from ..core.registry import GROUP, REGISTRY
from .model import PackageCard, PackInfo, Scorecard
from .scorecard import ScorecardOptions, build_scorecard


class PackRefused(UsageError):
    """The version cannot be packed as it is (a failing check, an open exploit finding, a missing part)."""


@dataclass
class PackOptions:
    out: Path | None = None  # default DIR/dist
    sources: Sequence[Path] = ()
    allow_findings: bool = False
    run_missing: bool = False
    isolated: bool = False
    limit: int | None = None
    samples: int | None = None
    seed: int | None = None
    on_step: Callable[[str], None] | None = None


@dataclass
class Packed:
    wheel: Path
    card: PackageCard


def read_project(project: Path) -> tuple[str, str | None, dict[str, str]]:
    """(distribution name, static version or None, environment name -> target) from ``pyproject.toml``."""
    py = project / "pyproject.toml"
    if not py.is_file():
        raise UsageError(f"{str(project)!r} has no pyproject.toml: give the folder of an environment package "
                         "(`envfoundry init NAME` makes one)")
    try:
        doc = tomllib.loads(py.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {py}: {e}") from None
    proj = doc.get("project") or {}
    name = proj.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{py} has no [project] name")
    eps = (proj.get("entry-points") or {}).get(GROUP) or {}
    if not isinstance(eps, dict) or not eps:
        raise UsageError(f"{py} declares no environment: add [project.entry-points.\"{GROUP}\"] NAME = "
                         "\"package.module:factory\"")
    version = proj.get("version") if isinstance(proj.get("version"), str) else None
    return name, version, {str(k): str(v).split("[", 1)[0].strip() for k, v in eps.items()}


def _installed_root(project: Path, env_name: str, target: str) -> Path:
    """The root the installed environment ``env_name`` loads from, which must be inside ``project``."""
    entry = REGISTRY.entry(env_name)
    hint = f"install the project first: pip install -e {project}"
    if entry is None:
        raise UsageError(f"environment {env_name!r} of {project} is not installed: {hint}")
    if entry.target != target:
        raise UsageError(f"environment {env_name!r} is installed as {entry.target!r} (from {entry.source}), but "
                         f"{project}/pyproject.toml declares {target!r}: {hint}")
    root = target_root(entry.target)
    if root is None or not root.resolve().is_relative_to(project.resolve()):
        raise UsageError(f"environment {env_name!r} loads from {root}, not from {project}: {hint}")
    if not root.is_dir():
        raise UsageError(f"environment {env_name!r} is a top-level module ({root.name}); pack needs it in a package "
                         "folder, where its scorecard goes")
    return root


def refusals(card: Scorecard) -> tuple[list[str], list[str]]:
    """(what makes packing impossible, findings that refuse unless allowed) for one scorecard."""
    name = card.identity.env
    blocking, findings = [], []
    for part in ("check", "audit"):
        p = getattr(card, part)
        if p.status != "present":
            blocking.append(f"{name}: the {part} is {p.status}" + (f" ({p.note})" if p.note else "")
                            + "; pack --run-missing runs it")
    if card.check.status == "present" and not card.check.ok:
        failed = [r.name for r in card.check.results if r.status == "fail"]
        findings.append(f"{name}: check fails: {', '.join(failed) or 'no checks ran'}")
    if card.audit.status == "present":
        findings += [f"{name}: audit exploit finding: {x}" for x in card.audit.open_exploits]
    return blocking, findings


def _build(project: Path, out: Path, isolated: bool) -> Path:
    try:
        import build as _build_mod
        import pyproject_hooks
        from build.env import DefaultIsolatedEnv
    except ImportError:
        raise UsageError('pack needs the `build` package: pip install "envfoundry[hub]"') from None
    runner = pyproject_hooks.quiet_subprocess_runner
    try:
        if isolated:
            with DefaultIsolatedEnv() as env:
                builder = _build_mod.ProjectBuilder.from_isolated_env(env, project, runner=runner)
                env.install(builder.build_system_requires)
                env.install(builder.get_requires_for_build("wheel"))
                return Path(builder.build("wheel", out))
        builder = _build_mod.ProjectBuilder(project, python_executable=sys.executable, runner=runner)
        missing = builder.check_dependencies("wheel")
        if missing:
            names = ", ".join(sorted(" -> ".join(chain) for chain in missing))
            raise UsageError(f"the build backend of {project} needs {names}: install it here, or pack --isolated "
                             "(which downloads it)")
        return Path(builder.build("wheel", out))
    except _build_mod.BuildException as e:
        raise UsageError(f"building the wheel of {project} failed: {' '.join(str(e).split())[-1500:]}") from None
    except _build_mod.BuildBackendException as e:
        cause = e.exception
        raise UsageError(f"the build backend failed on {project}: {type(cause).__name__}: "
                         f"{' '.join(str(cause).split())[-1500:]}") from None


def verify_wheel(wheel: Path, card: PackageCard) -> None:
    """The wheel is of the scorecard's package and version, holds the scorecard at the root and files that hash to
    its content hash; else an error naming what differs."""
    from packaging.utils import canonicalize_name, canonicalize_version, parse_wheel_filename

    name, version, _, _ = parse_wheel_filename(wheel.name)
    if name != canonicalize_name(card.package) or canonicalize_version(version) != canonicalize_version(card.version):
        raise UsageError(f"the build made {wheel.name}, not a wheel of {card.package} {card.version} (the installed "
                         "version): reinstall the project (pip install -e DIR)")
    with zipfile.ZipFile(wheel) as z:
        members = [(n, z.read(n)) for n in z.namelist() if n.startswith(card.root)]
    names = {n for n, _ in members}
    if card.root + SCORECARD_FILE not in names:
        raise UsageError(f"the build backend left {card.root}{SCORECARD_FILE} out of {wheel.name}: include the "
                         "package's data files in the wheel")
    files = hash_members(members, card.root)
    if files != card.files:
        raise UsageError(f"{wheel.name} does not hold the environment's files as they are (does the build backend "
                         f"leave some out?): {describe(card.files, files, card.root)}")


def describe(expected: dict[str, str], got: dict[str, str], where: str = "") -> str:
    """Which files differ between two ``path -> sha256`` maps, named."""
    parts = []
    left = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(p for p in set(expected) & set(got) if expected[p] != got[p])
    if changed:
        parts.append("changed: " + ", ".join(f"{where}{p} (sha256 {got[p][:12]}..., expected {expected[p][:12]}...)"
                                              for p in changed[:5]))
    if left:
        parts.append("missing: " + ", ".join(where + p for p in left[:5]))
    if extra:
        parts.append("not in the scorecard: " + ", ".join(where + p for p in extra[:5]))
    return "; ".join(parts) or "no difference"


def pack(project: Path | str, options: PackOptions | None = None) -> Packed:
    """Build the wheel of the environment package in ``project`` with its scorecard inside (see the module docs)."""
    opts = options or PackOptions()
    project = Path(project).resolve()
    dist, static_version, envs = read_project(project)
    installed = distribution_version(dist)
    if static_version is not None and installed is not None and installed != static_version:
        raise UsageError(f"{dist} is installed as version {installed}, but {project}/pyproject.toml says "
                         f"{static_version}: reinstall it (pip install -e {project})")
    roots = {name: _installed_root(project, name, target) for name, target in envs.items()}
    if len(set(roots.values())) > 1:
        where = ", ".join(sorted({str(r) for r in roots.values()}))
        raise UsageError(f"the environments of {dist} live in several packages ({where}); pack needs them in one")
    root = next(iter(roots.values()))
    cards = []
    blocking, findings = [], []
    for name in envs:
        card = build_scorecard(name, ScorecardOptions(sources=opts.sources, run_missing=opts.run_missing,
                                                      limit=opts.limit, samples=opts.samples, seed=opts.seed,
                                                      on_step=opts.on_step))
        b, f = refusals(card)
        blocking += b
        findings += f
        cards.append(card)
    shown = [] if opts.allow_findings else findings[:3]
    if blocking or shown:
        more = f"; and {len(findings) - 3} more finding(s)" if len(shown) < len(findings) and shown else ""
        how = "" if not shown else (" (fix it and audit again, or pack --allow-findings: the scorecard then says so)")
        raise PackRefused(f"refusing to pack {dist}: " + "; ".join([*shown, *blocking]) + more + how)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    cards = [c.model_copy(update={"pack": PackInfo(allowed_findings=[f for f in findings if f.startswith(
        c.identity.env + ":")], packed_at=now)}) for c in cards]
    first = cards[0].identity
    version = installed or static_version or "unknown"
    package_card = PackageCard(package=dist, version=version, root=root.name + "/", content_hash=first.content_hash,
                               files=first.files, scorecards=cards)
    if content_hash(package_card.files) != package_card.content_hash:  # cannot happen: one rule makes both
        raise EnvfoundryError("internal error: the scorecard's files do not give its content hash")
    out = Path(opts.out) if opts.out is not None else project / "dist"
    target = root / SCORECARD_FILE
    before = target.read_bytes() if target.is_file() else None
    if opts.on_step is not None:
        opts.on_step(f"building the wheel of {dist} {version}")
    target.write_text(package_card.model_dump_json(indent=2), encoding="utf-8")
    try:
        wheel = _build(project, out, opts.isolated)
    finally:
        if before is None:
            target.unlink(missing_ok=True)
        else:
            target.write_bytes(before)
    verify_wheel(wheel, package_card)
    return Packed(wheel, package_card)


__all__ = ["PackOptions", "PackRefused", "Packed", "describe", "pack", "read_project", "refusals", "verify_wheel"]
