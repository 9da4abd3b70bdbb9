"""Deprecated: the values in labels and scores are read by :mod:`envfoundry.grading.values`, the
files by :mod:`envfoundry.quality.agree.tables` (the names still resolve here, with a
DeprecationWarning, until the next release)."""

from ._moved import forwarder, names

_MOVED = {
    **names("envfoundry.grading.values", "Problems", "id_value", "is_number", "number", "parse_label", "show_value"),
    **names("envfoundry.quality.agree.tables", "CSV_SUFFIXES", "JSONL_SUFFIXES", "file_format", "read_jsonl",
            "read_table"),
}
__all__ = sorted(_MOVED)
__getattr__ = forwarder(__name__, _MOVED)
