"""Built-in environments, one subpackage each, written with only the public API (``envfoundry``).

They join the registry the way any installed package does: envfoundry's ``pyproject.toml``
declares them in the entry-point group ``envfoundry.environments``. The loader lives in
:mod:`envfoundry.core.loading`; the names below stay for code written against older versions.
"""

from __future__ import annotations

from ..core.loading import canonical_spec, load
from ..core.registry import REGISTRY as BUILTIN
from ..core.registry import register_env

__all__ = ["BUILTIN", "canonical_spec", "load", "register_env"]
