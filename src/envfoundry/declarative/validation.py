"""Validating a file against its model, with pydantic's errors turned into one message at the
culprit's line; and the JSON Schema of each file of the format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .errors import DeclarativeError, Loc
from .functions import show
from .models import EnvironmentFile, Node
from .source import loc_of
from .task_models import RubricFile, TasksFile

_PHRASES = {
    "string_type": "expects text",
    "int_type": "expects a whole number", "int_parsing": "expects a whole number",
    "int_from_float": "expects a whole number",
    "float_type": "expects a number", "float_parsing": "expects a number",
    "bool_type": "expects true or false", "bool_parsing": "expects true or false",
    "dict_type": "expects a mapping (key: value lines)", "model_type": "expects a mapping (key: value lines)",
    "model_attributes_type": "expects a mapping (key: value lines)",
    "list_type": "expects a list (- item lines)",
}


def _message(err: dict[str, Any], path: str) -> str:
    t, inp = err["type"], err.get("input")
    where = f"{path}: " if path else ""
    if t == "missing":
        parent, _, last = path.rpartition(".")
        return f"{parent + ': ' if parent else ''}missing required field {last!r}"
    if t == "literal_error":
        return f"{where}expects one of {err.get('ctx', {}).get('expected', '?')}, got {show(inp)}"
    if t in _PHRASES:
        return f"{where}{_PHRASES[t]}, got {show(inp)}"
    if t in ("effect", "step", "requirement", "solution_step"):
        return f"{where}{err['msg']}"
    if t == "string_pattern_mismatch":
        return f"{where}{show(inp)} is not allowed here (letters, digits and '_', starting with a letter)"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}{msg}" + (f", got {show(inp)}" if t not in ("value_error", "assertion_error") else "")


def _rank(err: dict[str, Any]) -> tuple[int, int]:
    # in a union, the member's own error (a wrong word) tells more than "expects a mapping"
    generic = err["type"] in ("model_type", "dict_type", "model_attributes_type")
    return (1 if generic else 0, -len(err["loc"]))


_TAGS = {"insert", "update", "delete", "let", "rows", "require", "call", "answer", "say"}


def _clean(doc: Any, loc: tuple[Any, ...]) -> list[Any]:
    """pydantic's error path without the names of union members (``ColumnSpec``, ``literal[...]``, a
    discriminator's tag), so that it follows the document."""
    parts = [p for p in loc if isinstance(p, int) or (isinstance(p, str) and not p[:1].isupper() and "[" not in p)]
    out: list[Any] = []
    cur = doc
    for i, p in enumerate(parts):
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if p in _TAGS and isinstance(cur, Mapping) and nxt is not None and nxt in cur and nxt not in _TAGS:
            continue  # the tag of the member the discriminator chose
        out.append(p)
        if isinstance(cur, Mapping) and isinstance(p, str):
            cur = cur.get(p)
        elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            cur = cur[p]
        else:
            cur = None
    return out


def validate(model: type[Node], doc: Any, file: str) -> Any:
    """``doc`` (read with lines) as ``model``; a problem is a DeclarativeError at its line."""
    if doc is None:
        raise DeclarativeError(Loc(file, 1), "the file is empty")
    if not isinstance(doc, Mapping):
        raise DeclarativeError(getattr(doc, "loc", Loc(file, 1)), "expects a mapping (key: value lines) at the top")
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        errs = e.errors(include_url=False)
        first = min(errs, key=_rank)
        parts = _clean(doc, first["loc"])
        others = {tuple(_clean(doc, x["loc"])) for x in errs} - {tuple(parts)}
        more = f" (and {len(others)} more problem(s))" if others else ""
        path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in parts).replace(".[", "[")
        raise DeclarativeError(loc_of(doc, parts, Loc(file, 1)), _message(first, path) + more) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each file of the format (what ``schema/*.schema.json`` holds)."""
    out = {}
    for name, model in (("environment", EnvironmentFile), ("tasks", TasksFile), ("rubric", RubricFile)):
        s = model.model_json_schema(by_alias=True)
        s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        s["$id"] = f"https://envfoundry.dev/schema/declarative/{name}.schema.json"
        out[name] = s
    return out



__all__ = ["json_schemas", "validate"]
