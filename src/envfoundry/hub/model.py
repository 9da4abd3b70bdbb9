"""The scorecard's schema: what is known about one version of an environment, as pydantic models.

Every part has a ``status``: ``present`` (read from a stored result of this version), ``missing``
(no result: its figures are None, never a pass), ``stale`` (a result of another version or of
other content: shown, but not counted) or ``not_applicable`` (e.g. grader agreement without
labels). ``command`` reproduces the part's figures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "envfoundry.scorecard/1"
Status = Literal["present", "missing", "stale", "not_applicable"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identity(_Model):
    """Which environment, and exactly which content."""

    env: str = Field(description="the environment's name")
    env_version: str
    spec: str = Field(description="how it was loaded (a name, module:factory or file.py:factory)")
    package: str | None = Field(None, description="the distribution that declares it (None for a file)")
    package_version: str | None = None
    root: str = Field(description="the folder (or file) whose files the content hash covers")
    content_hash: str = Field(description="sha256 over the root's files (see hash_rule)")
    hash_rule: str
    files: dict[str, str] = Field(description="relative path -> sha256 of each file the content hash covers")
    tasks_hash: str = Field(description="sha256 over the task ids sampled per split (see tasks_rule)")
    tasks_rule: str
    envfoundry_version: str


class Part(_Model):
    """What every part has: its status, where it was read from and how to reproduce it."""

    status: Status = "missing"
    source: str | None = Field(None, description="the stored result it was read from")
    created_at: str | None = None
    pinned: bool | None = Field(
        None, description="True: the result records this content hash; False: another one (stale); None: the "
        "result records none (accepted when it is newer than every file of the root)")
    note: str = ""
    command: str = Field("", description="the command that reproduces this part")


class CheckItem(_Model):
    name: str
    status: Literal["pass", "fail", "skipped"]
    detail: str = ""


class CheckPart(Part):
    ok: bool | None = None
    passed: int | None = None
    failed: int | None = None
    skipped: int | None = None
    results: list[CheckItem] = Field(default_factory=list)


class FindingItem(_Model):
    kind: str
    where: str = Field(description="probe, mutation or reference")
    name: str
    message: str
    tasks: int = 0
    of_tasks: int = 0
    fails: bool = Field(description="whether this kind fails the audit (its fail_on)")


class AuditPart(Part):
    ok: bool | None = None
    tasks: int | None = None
    samples: int | None = None
    findings_by_severity: dict[str, int] = Field(
        default_factory=dict, description="finding kind -> count, most severe first (every kind, zeros included)")
    findings: list[FindingItem] = Field(default_factory=list)
    exploit_rate: dict[str, float | None] = Field(
        default_factory=dict, description="probe -> share of rollouts passed without the right answer")
    skipped_probes: dict[str, str] = Field(default_factory=dict, description="probe -> why it did not run")
    mutation_kill_rate: float | None = None
    mutation_preservation_rate: float | None = None
    open_exploits: list[str] = Field(default_factory=list, description="the exploit findings, one line each")


class ModelCalibration(_Model):
    """One model's calibration."""

    model: str
    source: str
    created_at: str | None = None
    pinned: bool | None = None
    tasks: int
    scored_samples: int
    band: tuple[float, float]
    histogram_edges: list[float] = Field(description="pass-rate bin edges (10 bins; the last bin includes 1.0)")
    histogram: list[int] = Field(description="tasks per pass-rate bin (each task's observed pass rate)")
    band_shares: dict[str, float] = Field(description="verdict -> share of tasks (too_easy, in_band, too_hard, ...)")
    zero_variance_share: float | None = Field(description="share of GRPO groups with all rewards equal")
    mean_pass_rate: float | None = None
    command: str


class CalibrationPart(Part):
    models: list[ModelCalibration] = Field(default_factory=list)


class AgreementMetric(_Model):
    name: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None


class AgreementPart(Part):
    labels: str | None = Field(None, description="the labels the grader was compared with")
    scale: str | None = None
    n_items: int | None = None
    metrics: list[AgreementMetric] = Field(default_factory=list)


class PackInfo(_Model):
    """How ``envfoundry pack`` judged this version."""

    allowed_findings: list[str] = Field(
        default_factory=list, description="findings that would have refused the pack, let through by --allow-findings")
    packed_at: str


class Scorecard(_Model):
    """One version of one environment: identity, tasks, and the quality record pinned to it."""

    format: Literal["envfoundry.scorecard/1"] = FORMAT
    created_at: str
    identity: Identity
    splits: dict[str, int] = Field(description="split -> number of tasks")
    check: CheckPart
    audit: AuditPart
    calibration: CalibrationPart
    agreement: AgreementPart
    pack: PackInfo | None = None


class PackageCard(_Model):
    """What a packed wheel carries at its root (:data:`envfoundry.core.provenance.SCORECARD_FILE`):
    the scorecard of every environment the package declares."""

    format: Literal["envfoundry.package/1"] = "envfoundry.package/1"
    package: str
    version: str
    root: str = Field(description="the root's path inside the wheel, e.g. my_env/")
    content_hash: str
    files: dict[str, str]
    scorecards: list[Scorecard] = Field(min_length=1)


__all__ = [
    "FORMAT", "AgreementMetric", "AgreementPart", "AuditPart", "CalibrationPart", "CheckItem", "CheckPart",
    "FindingItem", "Identity", "ModelCalibration", "PackInfo", "PackageCard", "Part", "Scorecard", "Status",
]
