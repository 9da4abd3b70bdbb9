"""Reading what ``check``, ``audit``, ``calibrate`` and ``agree`` stored into the scorecard's parts.

Where: the folders given (default ``quality/ENV``), each searched to two levels down for
``check*.json`` (``envfoundry check ENV --json > quality/ENV/check.json``, or what ``scorecard
--run-missing`` stores), ``audit.json`` (an audit's folder), ``calibration.json`` (one per model)
and ``agree*.json`` (``envfoundry agree ... --json > quality/ENV/agree.json``).

Which: a result of another environment is ignored; of another version, or recording another content
hash (an audit's and a calibration's run manifests record it, as ``scorecard --run-missing``'s
check does), it is ``stale``; one that records no hash counts when it is newer than every file of
the environment's root. Among the results that count, the newest.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.provenance import SCORECARD_FILE
from ..quality.judging import KINDS
from .identity import newest_file
from .model import (
    AgreementMetric,
    AgreementPart,
    AuditPart,
    CalibrationPart,
    CheckItem,
    CheckPart,
    FindingItem,
    Identity,
    ModelCalibration,
    Status,
)

CHECK_FORMAT = "envfoundry.check/1"
#: beside an audit that ``scorecard --run-missing`` ran: the content hash it audited
PIN_FILE = "content_hash.json"
_MAX_BYTES = 64 << 20
_BINS = 10


def command(name: str, spec: str, env_args: Mapping[str, str], *options: str, tail: str = "") -> str:
    """``envfoundry NAME SPEC --env-arg K=V ... OPTIONS`` as a shell line."""
    words = ["envfoundry", name, spec, *[f"--env-arg={k}={v}" for k, v in env_args.items()], *options]
    return " ".join(shlex.quote(w) for w in words) + (f" {tail}" if tail else "")


def _opts(**kw: Any) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in kw.items() if v is not None]


def candidates(dirs: Sequence[Path], pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``dirs`` and up to two folder levels below them, newest first."""
    seen: dict[Path, None] = {}
    for d in dirs:
        for pat in (pattern, f"*/{pattern}", f"*/*/{pattern}"):
            for p in d.glob(pat):
                if p.is_file() and p.name != SCORECARD_FILE:
                    seen.setdefault(p.resolve(), None)
    return sorted(seen, key=lambda p: p.stat().st_mtime, reverse=True)


def read_json(p: Path) -> dict[str, Any] | None:
    """The JSON object in ``p``; None when it is not one (too large, damaged, not an object)."""
    try:
        if p.stat().st_size > _MAX_BYTES:
            return None
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _mtime_iso(p: Path) -> str:
    return _dt.datetime.fromtimestamp(p.stat().st_mtime, _dt.UTC).isoformat(timespec="seconds")


def _run_hash(run_dir: Path) -> str | None:
    """The content hash a run's manifest records (None when it records none)."""
    m = read_json(run_dir / "manifest.json") or {}
    pkg = m.get("env_package")
    return pkg.get("content_hash") if isinstance(pkg, dict) and isinstance(pkg.get("content_hash"), str) else None


class Judge:
    """Whether a stored result describes this identity (see the module documentation)."""

    def __init__(self, ident: Identity, root: Path) -> None:
        self.ident = ident
        self.newest = newest_file(root, ident.files)

    def __call__(self, path: Path, version: Any, recorded: str | None) -> tuple[Status, bool | None, str]:
        if version is not None and str(version) != self.ident.env_version:
            return "stale", None, f"made for version {version}, not {self.ident.env_version}"
        if recorded is not None:
            if recorded == self.ident.content_hash:
                return "present", True, ""
            return "stale", False, f"made for other content ({recorded[:19]}...), not {self.ident.content_hash[:19]}..."
        mtime, rel = self.newest
        if path.stat().st_mtime < mtime:
            return "stale", None, f"records no content hash and is older than {rel}, changed since"
        return "present", None, "records no content hash; newer than every file of the environment"


def _pick(found: Iterable[tuple[Path, dict[str, Any], tuple[Status, bool | None, str]]]):  # noqa: ANN202
    """The newest result that counts, else the newest stale one, else None."""
    items = list(found)
    return next((x for x in items if x[2][0] == "present"), None) or (items[0] if items else None)


# ------------------------------------------------------------------------ check
def check_part(dirs: Sequence[Path], judge: Judge, spec: str, env_args: Mapping[str, str],
               defaults: Mapping[str, Any]) -> CheckPart:
    name = judge.ident.env
    found = []
    for p in candidates(dirs, "check*.json"):
        d = read_json(p)
        if d is None or d.get("env") != name or not isinstance(d.get("checks"), list):
            continue
        found.append((p, d, judge(p, d.get("version"), d.get("content_hash"))))
    hit = _pick(found)
    cfg = {**defaults, **((hit[1].get("config") or {}) if hit else {})}
    cmd = command("check", spec, env_args, *_opts(limit=cfg.get("tasks"), samples=cfg.get("samples"),
                                                  seed=cfg.get("seed"), split=cfg.get("split")))
    if hit is None:
        return CheckPart(status="missing", command=cmd, note="no stored check result (run `envfoundry scorecard "
                         f"{spec} --run-missing`, or store `{cmd} --json`)")
    p, d, (status, pinned, note) = hit
    items = [CheckItem(name=str(c.get("name")), status=c.get("status") if c.get("status") in ("pass", "fail", "skipped")
                       else "fail", detail=str(c.get("detail", ""))[:400]) for c in d["checks"] if isinstance(c, dict)]
    counts = {s: sum(i.status == s for i in items) for s in ("pass", "fail", "skipped")}
    return CheckPart(status=status, source=str(p), created_at=d.get("created_at") or _mtime_iso(p), pinned=pinned,
                     note=note, command=cmd, ok=counts["fail"] == 0 and bool(items), passed=counts["pass"],
                     failed=counts["fail"], skipped=counts["skipped"], results=items)


# ------------------------------------------------------------------------ audit
def audit_part(dirs: Sequence[Path], judge: Judge, spec: str, env_args: Mapping[str, str]) -> AuditPart:
    name = judge.ident.env
    found = []
    for p in candidates(dirs, "audit.json"):
        d = read_json(p)
        if d is None or d.get("env") != name or not isinstance(d.get("findings"), list):
            continue
        pin = (read_json(p.parent / PIN_FILE) or {}).get("content_hash")
        recorded = _run_hash(p.parent / "baseline-noop") or (pin if isinstance(pin, str) else None)
        found.append((p, d, judge(p, d.get("env_version"), recorded)))
    hit = _pick(found)
    d = hit[1] if hit else {}
    cmd = command("audit", spec, env_args, *_opts(limit=d.get("tasks"), samples=d.get("samples"), seed=d.get("seed"),
                                                  split=d.get("split")))
    if hit is None:
        return AuditPart(status="missing", command=cmd, note=f"no stored audit (run `{cmd}`)")
    p, d, (status, pinned, note) = hit
    findings = [FindingItem(kind=str(f.get("kind")), where=str(f.get("source", "")), name=str(f.get("name", "")),
                            message=str(f.get("message", ""))[:400], tasks=int(f.get("count") or 0),
                            of_tasks=int(f.get("total") or 0), fails=bool(f.get("fails")))
                for f in d["findings"] if isinstance(f, dict)]
    by_kind = {k: sum(f.kind == k for f in findings) for k in KINDS}
    rates = d.get("exploit_rate") if isinstance(d.get("exploit_rate"), dict) else {}
    skipped = {str(r.get("name")): str(r.get("reason", "")) for r in d.get("probes") or []
               if isinstance(r, dict) and r.get("verdict") == "skipped"}
    return AuditPart(
        status=status, source=str(p.parent), created_at=d.get("timestamp") or _mtime_iso(p), pinned=pinned, note=note,
        command=cmd, ok=not any(f.fails for f in findings), tasks=d.get("tasks"), samples=d.get("samples"),
        findings_by_severity=by_kind, findings=findings,
        exploit_rate={str(k): (float(v) if isinstance(v, (int, float)) else None) for k, v in rates.items()},
        skipped_probes=skipped, mutation_kill_rate=d.get("mutation_kill_rate"),
        mutation_preservation_rate=d.get("mutation_preservation_rate"),
        open_exploits=[f"{f.name}: {f.message}" for f in findings if f.kind == "exploit"],
    )


# ------------------------------------------------------------------------ calibration
def _histogram(difficulty: Path) -> list[int]:
    bins = [0] * _BINS
    try:
        lines = difficulty.read_text(encoding="utf-8").splitlines()
    except OSError:
        return bins
    for line in lines:
        try:
            p = json.loads(line).get("p_hat")
        except (ValueError, AttributeError):
            continue
        if isinstance(p, (int, float)) and 0 <= p <= 1:
            bins[min(int(p * _BINS), _BINS - 1)] += 1
    return bins


def calibration_part(dirs: Sequence[Path], judge: Judge, spec: str, env_args: Mapping[str, str]) -> CalibrationPart:
    name = judge.ident.env
    by_model: dict[str, list[Any]] = {}
    for p in candidates(dirs, "calibration.json"):
        d = read_json(p)
        if d is None or d.get("env") != name or not isinstance(d.get("verdicts"), dict):
            continue
        by_model.setdefault(str(d.get("model")), []).append(
            (p, d, judge(p, d.get("env_version"), _run_hash(p.parent / "round-1"))))
    models, stale = [], []
    for model, found in by_model.items():
        p, d, (status, pinned, note) = _pick(found)
        cmd = command("calibrate", spec, env_args, *_opts(
            model=model, split=d.get("split"), limit=d.get("limit"), samples=d.get("samples"), budget=d.get("budget"),
            band=",".join(f"{x:g}" for x in d.get("band", [])) or None, seed=d.get("seed"),
            task_seed=d.get("task_seed")))
        if status != "present":
            stale.append(f"{model}: {note}")
            continue
        zv = ((d.get("zero_variance") or {}).get("before") or {}).get("share")
        models.append(ModelCalibration(
            model=model, source=str(p.parent), created_at=_mtime_iso(p), pinned=pinned, tasks=int(d.get("tasks", 0)),
            scored_samples=int(d.get("scored_samples", 0)), band=tuple(d.get("band", (0.02, 0.98))),
            histogram_edges=[i / _BINS for i in range(_BINS + 1)], histogram=_histogram(p.parent / "difficulty.jsonl"),
            band_shares={str(v): float(x.get("share", 0.0)) for v, x in d["verdicts"].items() if isinstance(x, dict)},
            zero_variance_share=zv, mean_pass_rate=d.get("mean_pass_rate"), command=cmd))
    cmd = command("calibrate", spec, env_args, "--model=MODEL")
    if models:
        return CalibrationPart(status="present", source=", ".join(m.source for m in models), command=cmd,
                               pinned=all(m.pinned for m in models) if all(m.pinned is not None for m in models)
                               else None, models=models, note="; ".join(f"left out {s}" for s in stale))
    if stale:
        return CalibrationPart(status="stale", command=cmd, note="; ".join(stale))
    return CalibrationPart(status="missing", command=cmd, note=f"not calibrated on any model (run `{cmd}`)")


# ------------------------------------------------------------------------ agreement
def agreement_part(dirs: Sequence[Path], judge: Judge, labels: Path | None) -> AgreementPart:
    name = judge.ident.env
    out_file = f"quality/{name}/agree.json"
    cmd = (f"envfoundry agree --labels {shlex.quote(name)} --judge {shlex.quote(name)} --model MODEL --json > "
           f"{out_file}")
    found = []
    for p in candidates(dirs, "agree*.json"):
        d = read_json(p)
        if d is None or not isinstance(d.get("metrics"), list) or "n_items" not in d:
            continue
        found.append((p, d, judge(p, None, None)))
    hit = _pick(found)
    if hit is None:
        if labels is None:
            return AgreementPart(status="not_applicable", command=cmd,
                                 note="the environment ships no labels (data/labels.jsonl) and no agreement is stored")
        return AgreementPart(status="missing", labels=labels.name, command=cmd,
                             note=f"labels ship with the environment, but no agreement is stored (run `{cmd}`)")
    p, d, (status, pinned, note) = hit
    metrics = [AgreementMetric(name=str(m.get("name")), value=m.get("value"), lo=m.get("lo"), hi=m.get("hi"),
                               n=m.get("n")) for m in d["metrics"] if isinstance(m, dict)]
    mode = d.get("mode", "grader")
    return AgreementPart(status=status, source=str(p), created_at=_mtime_iso(p), pinned=pinned, command=cmd,
                         note="; ".join(x for x in [note, "annotators among themselves (no grader)"
                                                    if mode == "annotators" else ""] if x),
                         labels=labels.name if labels else None, scale=d.get("scale"), n_items=d.get("n_items"),
                         metrics=metrics)


__all__ = ["CHECK_FORMAT", "PIN_FILE", "Judge", "agreement_part", "audit_part", "calibration_part", "candidates",
           "check_part", "command", "read_json"]
