"""``python -m envfoundry.cli`` (the same as ``python -m envfoundry``)."""

from . import _entry

_entry()
