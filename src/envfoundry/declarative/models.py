"""The declarative format as pydantic models: ``environment.yaml`` (and the base of every model).

These models check the *shape* of the files (fields, their kinds, allowed words); what the
expressions, tables and columns in them mean is checked when the environment is built
(:mod:`.build`). This module holds ``environment.yaml``; :mod:`.task_models` holds ``tasks.yaml`` and
``rubric.yaml``; :mod:`.validation` turns pydantic's errors into one message with the file and line
of the culprit and generates the JSON Schema shipped in ``schema/``.

Expressions are text: a value that starts with ``=`` is an expression (``amount: =it.amount``),
any other value is itself (``status: open``). Fields documented as *expression* (``check``,
``when``, ``where``, ``for_each``, ``key``, ``require``...) take an expression with or without
the ``=``. Fields documented as *template* are text with ``{expression}`` holes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, model_validator

from .errors import DeclarativeError, Loc
from .source import LDict

TypeName = Literal["string", "integer", "number", "boolean", "date", "enum", "list", "record", "any"]
TYPE_NAMES: tuple[str, ...] = TypeName.__args__  # type: ignore[attr-defined]
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
Expression = Annotated[str, Field(description="an expression (a leading '=' is optional)")]
Template = Annotated[str, Field(description="text with {expression} and {expression:format} holes")]
AnyValue = Annotated[Any, Field(description="a literal value, or an '=expression'; mappings and lists may hold both")]


class Node(BaseModel):
    """Base of every model: unknown fields are refused with the line of the key and a suggestion,
    and the mapping a model was read from is kept (:meth:`at` gives a field's line)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _raw: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _lines(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = {f.alias or n for n, f in cls.model_fields.items()} | set(cls.model_fields)
            for k in data:
                if k not in allowed:
                    close = difflib.get_close_matches(str(k), sorted(allowed), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    loc = data.at(k) if isinstance(data, LDict) else None
                    raise DeclarativeError(loc, f"unknown field {k!r}{hint} (fields here: "
                                           f"{', '.join(sorted(f.alias or n for n, f in cls.model_fields.items()))})")
        obj = handler(data)
        if isinstance(data, LDict):
            obj._raw = data
        return obj

    def at(self, key: str | None = None) -> Loc:
        """Where this node (or its field ``key``) is written."""
        raw = self._raw
        if raw is None:
            return Loc("?")
        return raw.at(key) if key is not None else raw.loc

    def raw(self, key: str) -> Any:
        """The field as written (an LDict/LList keeps its lines)."""
        return self._raw.get(key) if self._raw is not None else getattr(self, key)


def kind_of(keys: tuple[str, ...]) -> Any:
    """A discriminator: the first of ``keys`` present in the mapping names the union member."""

    def pick(v: Any) -> str | None:
        if isinstance(v, Mapping):
            return next((k for k in keys if k in v), None)
        return next((k for k in keys if getattr(v, k, None) is not None), None)
    return pick


# ------------------------------------------------------------------ environment.yaml: tables
class ColumnSpec(Node):
    """A column: its type; ``values`` for an enum; ``nullable``; a ``default`` for rows that leave it
    out; ``ref``: another table whose keys this column holds (checked on every write)."""

    type: TypeName = "string"
    values: list[str | int | float] | None = None
    nullable: bool = False
    default: Any = None
    ref: str | None = None
    description: str = ""


class TableSpec(Node):
    """A table of the world: its ``key`` column, its typed ``columns``, its rows (``data``: a CSV or
    JSON file; default ``data/TABLE.csv`` or ``.json`` when present) and whether tools may write it."""

    key: str
    columns: dict[str, TypeName | ColumnSpec]
    data: str | None = None
    readonly: bool = False
    description: str = ""


class ParamSpec(Node):
    """A parameter of a tool or a task type."""

    type: TypeName = "string"
    values: list[str | int | float] | None = None
    optional: bool = False
    default: Any = None
    description: str = ""
    min: float | None = None
    max: float | None = None


Param = TypeName | ParamSpec


# ------------------------------------------------------------------ environment.yaml: tools
class CheckSpec(Node):
    """A precondition: when ``check`` is false the call fails with ``error`` (a template) and changes nothing."""

    check: Expression
    error: Template


class InsertEffect(Node):
    """Insert a row into ``insert`` (a table the tool declares in ``writes``)."""

    insert: str
    values: dict[str, AnyValue]
    key: Expression | None = Field(None, description="the new row's key (default: its key column's value)")
    when: Expression | None = None
    as_: str | None = Field(None, alias="as", description="a name for the new row's key, for later effects")


class UpdateEffect(Node):
    """Set fields of the row ``key`` of table ``update``."""

    update: str
    key: Expression
    set: dict[str, AnyValue]
    when: Expression | None = None


class DeleteEffect(Node):
    """Delete the row ``key`` of table ``delete``."""

    delete: str
    key: Expression
    when: Expression | None = None


Effect = Annotated[
    Annotated[InsertEffect, Tag("insert")] | Annotated[UpdateEffect, Tag("update")]
    | Annotated[DeleteEffect, Tag("delete")],
    Discriminator(kind_of(("insert", "update", "delete")),
                  custom_error_type="effect", custom_error_message="an effect needs one of: insert, update, delete"),
]


class LookupSpec(Node):
    """Rows of ``table`` that match: ``match`` maps a column to an expression (usually a parameter;
    left out when it is null), ``where`` is any condition on ``row``."""

    table: str
    match: dict[str, Expression] = Field(default_factory=dict)
    where: Expression | None = None
    fields: list[str] | None = None
    order_by: list[str] | str | None = Field(None, description="columns, '-column' for descending")
    limit: int = Field(50, ge=1, le=1000)


class GetSpec(Node):
    """One row of ``table`` by ``key``; ``missing`` is the error (a template) when there is none."""

    table: str
    key: Expression
    fields: list[str] | None = None
    missing: Template | None = None


class ToolSpec(Node):
    """A tool: typed ``params``, named intermediate values (``let``), preconditions (``requires``),
    and exactly one operation: ``lookup``, ``get``, ``compute`` (a value), ``calculator`` (the
    agent's arithmetic) or ``do`` (effects on the tables named in ``writes``). ``returns`` is what a
    ``do`` tool answers (a template, or an =expression)."""

    description: str
    params: dict[str, Param] = Field(default_factory=dict)
    let: dict[str, AnyValue] = Field(default_factory=dict)
    requires: list[CheckSpec] = Field(default_factory=list)
    lookup: LookupSpec | None = None
    get: GetSpec | None = None
    compute: AnyValue = None
    calculator: bool = False
    do: list[Effect] = Field(default_factory=list)
    writes: list[str] = Field(default_factory=list)
    returns: AnyValue = None

    @model_validator(mode="after")
    def _one_operation(self) -> ToolSpec:
        ops = [k for k in ("lookup", "get", "compute", "do") if getattr(self, k)]
        if self.calculator:
            ops.append("calculator")
        if len(ops) != 1:
            got = ", ".join(ops) if ops else "none"
            raise ValueError(f"a tool has exactly one operation (lookup, get, compute, calculator or do); got {got}")
        return self


# ------------------------------------------------------------------ environment.yaml: policy
class RuleSpec(Node):
    """A rule the grader checks on the trace. Per call: each successful call of ``tools`` (that
    ``when`` selects) must satisfy ``require``, or must not satisfy ``forbid`` (``forbid: true``
    forbids the call itself). Whole trace: ``check`` must hold. Expressions see ``call`` (tool,
    args, ok, result, index), ``before`` and ``after`` (the calls around it), ``calls``,
    ``answer`` (the final text), ``params`` (the task's) and the world as it was before the episode."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    text: str
    tools: list[str] | None = None
    when: Expression | None = None
    require: Expression | None = None
    forbid: Expression | bool | None = None
    check: Expression | None = None
    include_failed: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> RuleSpec:
        if self.check is not None:
            if self.tools is not None or self.require is not None or self.forbid is not None:
                raise ValueError("a rule has either `check` (the whole trace) or `tools` with `require`/`forbid`")
        elif self.tools is None or (self.require is None) == (self.forbid is None):
            raise ValueError("a rule needs `check`, or `tools` with exactly one of `require` and `forbid`")
        return self


class PolicySpec(Node):
    """The policy document (``file``, Markdown) shown by the tool ``tool`` (null: no tool), and the
    ``rules`` the grader checks on every trace (a task type may pick some with ``rules:``)."""

    file: str | None = "policy.md"
    tool: str | None = "read_policy"
    description: str = "Read the policy document that governs this work."
    rules: list[RuleSpec] = Field(default_factory=list)


# ------------------------------------------------------------------ generator steps
class LetStep(Node):
    """Name values (evaluated in order; a task's given parameter keeps its value)."""

    let: dict[str, AnyValue]


class RowsStep(Node):
    """Add rows to table ``rows``: one, ``repeat`` times, or one per item of ``for_each`` (bound
    to ``it``; ``i`` is the position), each only ``when`` it holds; ``let`` names per-row values;
    ``as`` names the list of the added rows."""

    rows: str
    values: dict[str, AnyValue]
    repeat: int | Expression | None = None
    for_each: Expression | None = None
    when: Expression | None = None
    let: dict[str, AnyValue] = Field(default_factory=dict)
    key: Expression | None = None
    as_: str | None = Field(None, alias="as")


class UpdateStep(Node):
    """Set fields of the row ``key`` of table ``update``, or of every row ``where`` holds (bound to ``row``)."""

    update: str
    set: dict[str, AnyValue]
    key: Expression | None = None
    where: Expression | None = None


class DeleteStep(Node):
    """Delete the row ``key`` of table ``delete``, or every row ``where`` holds."""

    delete: str
    key: Expression | None = None
    where: Expression | None = None


class RequireStep(Node):
    """A constraint: when false, the generator starts again from another seed (up to ``max_attempts``)."""

    require: Expression
    message: str = ""


Step = Annotated[
    Annotated[LetStep, Tag("let")] | Annotated[RowsStep, Tag("rows")] | Annotated[UpdateStep, Tag("update")]
    | Annotated[DeleteStep, Tag("delete")] | Annotated[RequireStep, Tag("require")],
    Discriminator(kind_of(("rows", "update", "delete", "require", "let")), custom_error_type="step",
                  custom_error_message="a step needs one of: let, rows, update, delete, require"),
]


class GeneratorSpec(Node):
    """A procedural world: ``steps`` run before a task type's ``generate`` steps, ``finish`` after
    them; a ``require`` that fails makes the generator start again, up to ``max_attempts`` times."""

    steps: list[Step] = Field(default_factory=list)
    finish: list[Step] = Field(default_factory=list)
    max_attempts: int = Field(100, ge=1, le=10_000)


class Limits(Node):
    """Turns per episode, tool calls per episode (null: no limit) and the longest tool result."""

    max_turns: int = Field(20, ge=1, le=1000)
    max_tool_calls: int | None = Field(None, ge=1, le=100_000)
    max_result_chars: int = Field(20_000, ge=100, le=1_000_000)


class EnvironmentFile(Node):
    """``environment.yaml``: what the environment is and how its world and tools work."""

    format: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = "0.1.0"
    description: str = ""
    system: Template | None = None
    answer_format: str | None = Field(None, description="how a final answer is written, e.g. <answer>{answer}</answer>")
    limits: Limits = Field(default_factory=Limits)
    constants: dict[str, Any] = Field(default_factory=dict)
    tables: dict[str, TableSpec]
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    policy: PolicySpec | None = None
    generator: GeneratorSpec | None = None
    definitions: dict[str, Any] = Field(default_factory=dict, description="a place for YAML anchors (&name) that "
                                        "the rest of the file reuses (*name); not read otherwise")


__all__ = [
    "TYPE_NAMES", "AnyValue", "CheckSpec", "ColumnSpec", "DeleteEffect", "DeleteStep", "EnvironmentFile", "Expression",
    "GeneratorSpec", "GetSpec", "InsertEffect", "LetStep", "Limits", "LookupSpec", "Node", "Param", "ParamSpec",
    "PolicySpec", "RequireStep", "RowsStep", "RuleSpec", "Step", "TableSpec", "Template", "ToolSpec", "UpdateEffect",
    "UpdateStep", "kind_of",
]
