"""Quality assurance: conformance checks, difficulty calibration, reward-hacking audits, grader agreement."""

from . import probes_text, probes_tools  # noqa: F401 - registers the built-in probes in PROBES
from .agree import AgreeConfig, agree
from .audit import (
    DEFAULT_FAIL_ON,
    KINDS,
    AuditConfig,
    AuditReport,
    Finding,
    ProbeResult,
    audit_async,
    audit_env,
    parse_fail_on,
)
from .calibrate import CalibrateConfig, Calibration, calibrate, calibrate_async
from .check import CHECKS, CheckConfig, CheckReport, CheckResult, check_env
from .difficulty import VERDICTS, TaskDifficulty, verdict
from .mutation import MutationReport, mutation_test
from .probes import PROBES, ArmProbe, Probe, ProbeContext, TextProbe, make_probe, probe_classes, register_probe

__all__ = [
    "AgreeConfig", "agree",
    "DEFAULT_FAIL_ON", "KINDS", "PROBES", "ArmProbe", "AuditConfig", "AuditReport", "Finding", "MutationReport",
    "Probe", "ProbeContext", "ProbeResult", "TextProbe", "audit_async", "audit_env", "make_probe", "mutation_test",
    "parse_fail_on", "probe_classes", "register_probe",
    "CHECKS", "VERDICTS", "CalibrateConfig", "Calibration", "CheckConfig", "CheckReport", "CheckResult",
    "TaskDifficulty", "calibrate", "calibrate_async", "check_env", "verdict",
]
