"""Environments written without Python: a folder of YAML, CSV and Markdown.

A folder holds ``environment.yaml`` (tables with typed columns and keys, tools as typed operations
on them, constants, limits, the policy and its rules, an optional generator), data files (CSV or
JSON, one per table), ``tasks.yaml`` (task types: prompt templates, parameters, the expected
outcome as required world changes, an optional expected answer, and a reference solution; written
tasks and/or generated ones), ``policy.md`` and optionally ``rubric.yaml``.

``envfoundry run ./folder`` (or ``--env ./folder``) loads it through :func:`load_folder`; the
JSON Schema of each file ships in ``schema/`` (:func:`schema_path`). Expressions are a small safe
language (:mod:`.expr`): nothing in a folder can run code on the host. Every problem in a folder is
a :class:`DeclarativeError` naming the file and line (exit code 2).
"""

from __future__ import annotations

from pathlib import Path

from .build import ENV_FILE, load_folder
from .errors import DeclarativeError, Loc
from .validation import json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


def schema_path(name: str) -> Path:
    """The shipped JSON Schema of ``environment``, ``tasks`` or ``rubric`` (``.schema.json``)."""
    if name not in ("environment", "tasks", "rubric"):
        raise ValueError(f"no schema {name!r} (environment, tasks, rubric)")
    return SCHEMA_DIR / f"{name}.schema.json"


__all__ = ["ENV_FILE", "SCHEMA_DIR", "DeclarativeError", "Loc", "json_schemas", "load_folder", "schema_path"]
