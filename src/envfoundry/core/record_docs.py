"""The README's table of the record fields, printed from the docstrings of
:class:`~envfoundry.core.record.TrajectoryRecord`: ``python -m envfoundry.core.record_docs``
(a test keeps the README's table equal to it)."""

import ast
import enum
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

from . import record
from .record import MessageRecord, TimingsRecord, ToolCallRecord, TrajectoryRecord, UsageRecord, WorldChangeRecord


def field_docs(td: Any) -> dict[str, str]:
    """The docstring under each field of the TypedDict ``td`` of :mod:`envfoundry.core.record`
    (read from its source: Python keeps no docstring of a class attribute)."""
    tree = ast.parse(Path(record.__file__).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == td.__name__)
    docs: dict[str, str] = {}
    for stmt, after in zip(cls.body, cls.body[1:], strict=False):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


_NESTED = {ToolCallRecord: "tool call", MessageRecord: "message", UsageRecord: "token counts",
           TimingsRecord: "timings", WorldChangeRecord: "change"}


def type_name(tp: Any) -> str:
    """A field's type in words, as the README's table gives it."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return "any"
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return "string"
    if is_typeddict(tp):
        return _NESTED.get(tp, "object")
    if origin is list:
        item = type_name(args[0])
        return f"list of {item if item.endswith('s') else item + 's'}"
    if origin is dict:
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}[tp]


def markdown_table(td: Any = TrajectoryRecord) -> str:
    """The fields of ``td`` as a markdown table: name, type, whether every record has it, and its docstring."""
    hints = get_type_hints(td)
    docs = field_docs(td)
    rows = ["| field | type | written | meaning |", "| --- | --- | --- | --- |"]
    for name in td.__annotations__:
        written = "always" if name in td.__required_keys__ else "when it applies"
        doc = docs[name].replace("|", "\\|")
        rows.append(f"| `{name}` | {type_name(hints[name])} | {written} | {doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
