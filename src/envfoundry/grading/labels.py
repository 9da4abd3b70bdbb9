"""Deprecated: reading labels, scores and transcripts moved to :mod:`envfoundry.quality.agree`
(the names still resolve here, with a DeprecationWarning, until the next release)."""

from ._moved import forwarder, names

_MOVED = {
    **names("envfoundry.grading.labelset", "SCALES"),
    **names("envfoundry.quality.agree.labels", "KINDS", "ROLES", "load_items", "load_jsonl", "load_labels",
            "load_scores"),
    **names("envfoundry.quality.agree.sources", "check_save", "scores_from_run", "shipped_labels", "write_jsonl"),
}
__all__ = sorted(_MOVED)
__getattr__ = forwarder(__name__, _MOVED)
