"""Deprecated: running a judge over transcripts moved to :mod:`envfoundry.quality.agree.judge`
(the names still resolve here, with a DeprecationWarning, until the next release)."""

from ._moved import forwarder, names

_MOVED = names("envfoundry.quality.agree.judge", "PROBES", "close_judge", "resolve_judge", "run_judge")
__all__ = sorted(_MOVED)
__getattr__ = forwarder(__name__, _MOVED)
