"""Quality assurance: conformance checks, difficulty calibration, reward-hacking audits."""

from .check import CHECKS, CheckConfig, CheckReport, CheckResult, check_env

__all__ = ["CHECKS", "CheckConfig", "CheckReport", "CheckResult", "check_env"]
