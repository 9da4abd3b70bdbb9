"""``envfoundry view``: a local, read-only web app over run stores, calibrations, audits, check
results and scorecards (Starlette on uvicorn, pages rendered and escaped on the server, no script).

- :func:`serve` listens (loopback unless told otherwise) until interrupted;
- :func:`create_app` gives the ASGI app, for tests and for embedding.

Runs are paged from a byte-offset index of ``trajectories.jsonl`` kept in a cache folder outside
the run (:mod:`.index`); only the trajectory being shown is ever read whole.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:  # the web stack is imported on first use
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
