"""Quality assurance: conformance checks, difficulty calibration, reward-hacking audits."""

from .audit import AuditConfig, AuditReport, ProbeResult, audit_async, audit_env
from .calibrate import CalibrateConfig, Calibration, calibrate, calibrate_async
from .check import CHECKS, CheckConfig, CheckReport, CheckResult, check_env
from .difficulty import VERDICTS, TaskDifficulty, verdict
from .mutation import MutationReport, mutation_test
from .probes import PROBES, Probe, make_probe, probe_classes

__all__ = [
    "PROBES", "AuditConfig", "AuditReport", "MutationReport", "Probe", "ProbeResult", "audit_async", "audit_env",
    "make_probe", "mutation_test", "probe_classes",
    "CHECKS", "VERDICTS", "CalibrateConfig", "Calibration", "CheckConfig", "CheckReport", "CheckResult",
    "TaskDifficulty", "calibrate", "calibrate_async", "check_env", "verdict",
]
