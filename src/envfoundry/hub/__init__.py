"""Sharing environments: scorecards, packing, the package index (the hub), publish and install.

- :func:`build_scorecard` / :func:`write_scorecard` (:mod:`.scorecard`): what is known about one
  version of an environment, pinned to its content hash (:mod:`envfoundry.core.provenance`);
- :func:`pack` (:mod:`.pack`): a wheel of an environment package with its scorecard inside;
- :func:`scaffold` (:mod:`.scaffold`): ``envfoundry init``;
- :func:`create_app` / :func:`serve` (:mod:`.server`): the hub, pypiserver plus envfoundry's
  uploads and pages; :func:`publish` and :func:`install` (:mod:`.client`) talk to it.

Imported on first use: the server needs the ``hub`` and ``serve`` extras.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Scorecard": "model", "PackageCard": "model", "build_scorecard": "scorecard", "write_scorecard": "scorecard",
    "ScorecardOptions": "scorecard", "pack": "pack", "PackOptions": "pack", "PackRefused": "pack",
    "scaffold": "scaffold", "create_app": "server", "serve": "server", "HubIndex": "index", "publish": "client",
    "install": "client", "IntegrityError": "client", "HubError": "client",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
