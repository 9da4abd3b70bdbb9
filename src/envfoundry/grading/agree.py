"""Deprecated: the agree workflow moved to :mod:`envfoundry.quality.agree` (with a library entry
point, :func:`envfoundry.quality.agree`); the computation on label and score records is
:func:`envfoundry.grading.compare.compare`, its report :mod:`envfoundry.grading.agreement_report`.
The names this module had still resolve, with a DeprecationWarning, until the next release."""

from ._moved import forwarder, names

_MOVED = {
    **names("envfoundry.grading.agreement_report", "AgreementReport", "Metric", "error_causes"),
    **names("envfoundry.grading.coding", "LabelData", "check_threshold", "prepare_labels", "reference_labels"),
    **names("envfoundry.grading.compare", "MAX_BOOT", "compare", "detect_scale"),
    **names("envfoundry.grading.labelset", "SCALES"),
    **names("envfoundry.quality.agree", "PROBES", "check_save", "close_judge", "load_items", "load_jsonl",
            "load_labels", "load_scores", "resolve_judge", "run_judge", "scores_from_run", "shipped_labels",
            "write_jsonl"),
}
__all__ = sorted(_MOVED)
__getattr__ = forwarder(__name__, _MOVED)
