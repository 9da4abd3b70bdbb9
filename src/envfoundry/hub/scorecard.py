"""``envfoundry scorecard``: one document of what is known about one version of an environment.

:func:`build_scorecard` loads the environment, computes its identity (:mod:`.identity`), reads the
stored results (:mod:`.results`) and, with ``run_missing``, first runs the cheap parts that are
missing or stale (``check``, and ``audit`` with its scripted probes), storing them where the
scorecard reads them. :func:`write_scorecard` writes ``scorecard.json``, ``scorecard.md`` and a
self-contained ``scorecard.html`` (:mod:`.render`).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.env import Environment
from ..core.files import atomic_write_text, ensure_dir
from ..core.loading import canonical_spec, load
from ..quality.audit import AuditConfig, audit_env, default_results_dir
from ..quality.check import CheckConfig, check_env
from . import render
from .identity import identity
from .model import Scorecard
from .results import CHECK_FORMAT, PIN_FILE, Judge, agreement_part, audit_part, calibration_part, check_part

#: what ``--run-missing`` samples unless told otherwise (the commands' own defaults)
CHECK_DEFAULTS = {"tasks": 20, "samples": 2, "seed": 0}
AUDIT_DEFAULTS = {"tasks": 30, "samples": 2, "seed": 0}


@dataclass
class ScorecardOptions:
    """``sources``: folders of stored results (default ``quality/ENV``); ``run_missing``: run check
    and audit when theirs are missing or stale, storing them in the first source folder;
    ``limit``/``samples``/``seed``: what those runs sample; ``on_step``: told what runs."""

    sources: Sequence[Path] = ()
    run_missing: bool = False
    limit: int | None = None
    samples: int | None = None
    seed: int | None = None
    env_args: Mapping[str, str] = field(default_factory=dict)
    on_step: Callable[[str], None] | None = None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _new_dir(base: Path, prefix: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    first = base / f"{prefix}-{stamp}"
    p, n = first, 1
    while True:
        try:
            ensure_dir(p.parent, "results folder")
            p.mkdir()
            return p
        except FileExistsError:
            n += 1
            p = first.with_name(f"{first.name}-{n}")


def run_check(env: Environment, spec: str, out_dir: Path, content_hash: str, *, limit: int | None,
              samples: int | None, seed: int | None) -> Path:
    """Run ``check`` and store it as ``out_dir/check-TIME.json`` with the content hash it checked."""
    cfg = {"tasks": limit or CHECK_DEFAULTS["tasks"], "samples": samples or CHECK_DEFAULTS["samples"],
           "seed": CHECK_DEFAULTS["seed"] if seed is None else seed}
    n = len(env.tasks("test" if "test" in env.splits else env.splits[0], seed=cfg["seed"]))
    cfg["tasks"] = min(cfg["tasks"], n) or cfg["tasks"]
    report = check_env(env, spec=spec, config=CheckConfig(**cfg))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    ensure_dir(out_dir, "results folder")
    path, k = out_dir / f"check-{stamp}.json", 1
    while path.exists():
        k += 1
        path = out_dir / f"check-{stamp}-{k}.json"
    doc = {"format": CHECK_FORMAT, **report.to_dict(), "spec": spec, "content_hash": content_hash,
           "created_at": _now(), "config": cfg}
    atomic_write_text(path, json.dumps(doc, indent=2, default=str))
    return path


def run_audit(env: Environment, spec: str, out_dir: Path, content_hash: str, *, limit: int | None,
              samples: int | None, seed: int | None) -> Path:
    """Run ``audit`` (scripted probes and mutations) into a new ``out_dir/audit-TIME``, with the content hash it
    audited beside it (:data:`~.results.PIN_FILE`: a run of a file records none in its manifest)."""
    n = len(env.tasks("test" if "test" in env.splits else env.splits[0], seed=seed or 0))
    tasks = min(limit or AUDIT_DEFAULTS["tasks"], n) or None
    out = _new_dir(out_dir, "audit")
    audit_env(env, spec=spec, config=AuditConfig(tasks=tasks, samples=samples, seed=seed, out=out))
    atomic_write_text(out / PIN_FILE, json.dumps({"content_hash": content_hash, "created_at": _now()}))
    return out


def _labels(root: Path) -> Path | None:
    p = (root if root.is_dir() else root.parent) / "data" / "labels.jsonl"
    return p if p.is_file() else None


def build_scorecard(spec: str, options: ScorecardOptions | None = None) -> Scorecard:
    """The scorecard of the environment ``spec`` (see the module documentation)."""
    opts = options or ScorecardOptions()
    spec = canonical_spec(spec)
    env = load(spec, dict(opts.env_args))
    ident, sizes, root = identity(env, spec)
    dirs = [Path(d) for d in opts.sources] or [default_results_dir(env.name)]
    judge = Judge(ident, root)
    args = dict(opts.env_args)

    def say(msg: str) -> None:
        if opts.on_step is not None:
            opts.on_step(msg)

    check = check_part(dirs, judge, spec, args, CHECK_DEFAULTS)
    if opts.run_missing and check.status != "present":
        say(f"running check on {env.name} ({check.status})")
        run_check(env, spec, dirs[0], ident.content_hash, limit=opts.limit, samples=opts.samples, seed=opts.seed)
        check = check_part(dirs, judge, spec, args, CHECK_DEFAULTS)
    audit = audit_part(dirs, judge, spec, args)
    if opts.run_missing and audit.status != "present":
        say(f"running audit on {env.name} ({audit.status})")
        run_audit(env, spec, dirs[0], ident.content_hash, limit=opts.limit, samples=opts.samples, seed=opts.seed)
        audit = audit_part(dirs, judge, spec, args)
    return Scorecard(
        created_at=_now(), identity=ident, splits=sizes, check=check, audit=audit,
        calibration=calibration_part(dirs, judge, spec, args), agreement=agreement_part(dirs, judge, _labels(root)),
    )


def write_scorecard(card: Scorecard, out: Path) -> dict[str, Path]:
    """Write the three formats into ``out``: ``scorecard.json``, ``scorecard.md``, ``scorecard.html``."""
    ensure_dir(out, "scorecard folder")
    paths = {"json": out / "scorecard.json", "md": out / "scorecard.md", "html": out / "scorecard.html"}
    atomic_write_text(paths["json"], card.model_dump_json(indent=2))
    atomic_write_text(paths["md"], render.markdown(card))
    atomic_write_text(paths["html"], render.html(card))
    return paths


__all__ = ["AUDIT_DEFAULTS", "CHECK_DEFAULTS", "ScorecardOptions", "build_scorecard", "run_audit", "run_check",
           "write_scorecard"]
