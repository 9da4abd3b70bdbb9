"""``tasks.yaml`` and ``rubric.yaml`` as pydantic models (see :mod:`.models` for how values and
expressions are written)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from .models import AnyValue, Expression, Node, Param, Step, Template, kind_of


# ------------------------------------------------------------------ tasks.yaml
class InsertReq(Node):
    """``count`` new rows of ``insert`` whose fields satisfy ``where`` (per item of ``for_each``)."""

    insert: str
    where: dict[str, AnyValue] = Field(default_factory=dict)
    count: int | Expression = 1
    for_each: Expression | None = None
    when: Expression | None = None
    name: Template | None = None
    weight: float = Field(1.0, gt=0)


class UpdateReq(Node):
    """Row ``key`` of ``update`` ends with fields satisfying ``set``."""

    update: str
    key: AnyValue
    set: dict[str, AnyValue]
    for_each: Expression | None = None
    when: Expression | None = None
    name: Template | None = None
    weight: float = Field(1.0, gt=0)


class DeleteReq(Node):
    """Row ``key`` of ``delete`` is deleted."""

    delete: str
    key: AnyValue
    for_each: Expression | None = None
    when: Expression | None = None
    name: Template | None = None
    weight: float = Field(1.0, gt=0)


Requirement = Annotated[
    Annotated[InsertReq, Tag("insert")] | Annotated[UpdateReq, Tag("update")] | Annotated[DeleteReq, Tag("delete")],
    Discriminator(kind_of(("insert", "update", "delete")), custom_error_type="requirement",
                  custom_error_message="a requirement needs one of: insert, update, delete"),
]


class PatternSpec(Node):
    """Changes by table, operation and field (each left out matches anything)."""

    table: str | None = None
    op: Literal["insert", "update", "delete"] | None = None
    field: str | None = None


class ExpectSpec(Node):
    """The expected outcome: required changes, allowed changes; every other change is collateral.
    A field predicate is a value (equality) or one of ``{approx: x, tol: t}``, ``{one_of: [...]}``,
    ``{ge|gt|le|lt|ne: x}``, ``{between: [a, b]}``, ``{contains: text}``, ``{any: true}``."""

    require: list[Requirement] = Field(default_factory=list)
    allow: list[PatternSpec] = Field(default_factory=list)
    ignore: list[PatternSpec] = Field(default_factory=list)
    partial: bool = True
    partial_cap: float = Field(0.5, ge=0, lt=1)
    collateral_penalty: float = Field(0.25, ge=0)


class AnswerSpec(Node):
    """The expected final answer: a number within ``tol``, or text (compared ignoring case and spacing)."""

    value: AnyValue
    tol: float | Expression | None = None
    kind: Literal["number", "text"] | None = None


class CallStep(Node):
    """The reference solution calls ``call`` with ``args`` (once per item of ``for_each``, when ``when``)."""

    call: str
    args: dict[str, AnyValue] = Field(default_factory=dict)
    for_each: Expression | None = None
    when: Expression | None = None


class AnswerStep(Node):
    """The reference solution's final answer (a template), written in the environment's answer format."""

    answer: Template


class SayStep(Node):
    """The reference solution's final message (a template), as it is."""

    say: Template


SolutionStep = Annotated[
    Annotated[CallStep, Tag("call")] | Annotated[AnswerStep, Tag("answer")] | Annotated[SayStep, Tag("say")],
    Discriminator(kind_of(("call", "answer", "say")), custom_error_type="solution_step",
                  custom_error_message="a solution step needs one of: call, answer, say"),
]


class TaskType(Node):
    """A kind of task: its parameters, how its world is made (``generate`` steps, then the
    environment's ``finish`` steps, then ``derive`` steps), the prompt, the expected outcome, the
    expected answer and the reference solution."""

    description: str = ""
    params: dict[str, Param] = Field(default_factory=dict)
    generate: list[Step] = Field(default_factory=list)
    derive: list[Step] = Field(default_factory=list)
    prompt: Template
    system: Template | None = None
    expect: ExpectSpec = Field(default_factory=ExpectSpec)
    answer: AnswerSpec | None = None
    solution: list[SolutionStep] = Field(default_factory=list)
    rules: list[str] | None = None
    metadata: dict[str, AnyValue] = Field(default_factory=dict)
    weight: float = Field(1.0, ge=0)


class TaskEntry(Node):
    """One written task: its type, split, parameters, and its world: the folder's ``data`` files, or
    ``generate``d by the generator from ``seed``."""

    type: str
    split: str = "test"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    world: Literal["data", "generate"] | None = None


class ProceduralSpec(Node):
    """Generated tasks: ``sizes`` per split; ``split_weights``: the share of problems each split owns."""

    sizes: dict[str, int]
    split_weights: dict[str, int] | None = None


class TasksFile(Node):
    """``tasks.yaml``: the task types, and written tasks (a list, or a CSV file) and/or generated ones."""

    types: dict[str, TaskType]
    tasks: list[TaskEntry] | str | None = None
    procedural: ProceduralSpec | None = None
    definitions: dict[str, Any] = Field(default_factory=dict, description="a place for YAML anchors (&name) that "
                                        "the rest of the file reuses (*name); not read otherwise")


# ------------------------------------------------------------------ rubric.yaml
class RubricItemSpec(Node):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    question: str
    weight: float = Field(1.0, gt=0)
    critical: bool = False


class RubricFile(Node):
    """``rubric.yaml``: yes/no questions a judge model answers about a transcript (used with
    ``--env-arg judge=SPEC``); ``weight`` is the share of the score the rubric can take away."""

    task: str = "Judge how the assistant handled the conversation below."
    items: list[RubricItemSpec]
    pass_threshold: float = Field(0.5, ge=0, le=1)
    weight: float = Field(0.25, ge=0, le=1)


__all__ = [
    "AnswerSpec", "AnswerStep", "CallStep", "DeleteReq", "ExpectSpec", "InsertReq", "PatternSpec", "ProceduralSpec",
    "Requirement", "RubricFile", "RubricItemSpec", "SayStep", "SolutionStep", "TaskEntry", "TaskType", "TasksFile",
    "UpdateReq",
]
