"""The bodies the server takes (their pydantic models make the OpenAPI description), and their checks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import malformed


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResetBody(_Strict):
    """Start an episode. Give ``task_id`` (optionally with the ``split``, ``task_seed`` and ``index`` it was
    listed under, which finds it at once) or a whole ``task``; with neither, ``index`` into ``split``, or
    a task drawn from the default split by ``seed``."""

    task_id: str | None = None
    task: dict[str, Any] | None = None
    split: str | None = None
    task_seed: int | None = Field(None, ge=0)
    index: int | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0, description="the episode's seed (default 0)")
    world: bool = Field(False, description="send the initial world (a base world's key and the changes to it) and "
                        "each step's changed records")
    reference: bool = Field(False, description="send the reference solution's next action with each observation")
    brief: bool = Field(False, description="leave the prompt messages out of the first observation")
    episode_id: str | None = Field(None, description="OpenEnv's episode id, echoed back")


class ToolCallBody(BaseModel):
    id: str = ""
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ActionBody(_Strict):
    """The agent's message: text, tool calls, or both."""

    role: Literal["assistant"] = "assistant"
    content: str | None = ""
    message: str | None = Field(None, description="OpenEnv-style alias of content")
    tool_calls: list[ToolCallBody] = Field(default_factory=list)


class GradeBody(_Strict):
    truncated: bool = Field(False, description="the client ended the episode at its own turn limit")


class GradeInputBody(_Strict):
    """A trajectory to grade; its initial world whole (``world_before``) or as a base world's key
    (``world_base``, from a reset) and ``world_before_changes``; ``world_changes`` turn it into the final world."""

    task: dict[str, Any]
    messages: list[dict[str, Any]] = Field(default_factory=list)
    world_before: dict[str, Any] | None = None
    world_base: str | None = None
    world_before_changes: list[list[Any]] = Field(default_factory=list)
    world_changes: list[list[Any]] = Field(default_factory=list)
    truncated: bool = False
    grader: str | None = None


class MutationsBody(_Strict):
    task: dict[str, Any]
    actions: list[dict[str, Any]] = Field(default_factory=list)


_RESET_TYPES = {"task_id": str, "split": str, "task_seed": int, "index": int, "seed": int, "world": bool,
                "reference": bool, "brief": bool, "episode_id": str, "task": dict}


def reset_request(data: dict[str, Any]) -> dict[str, Any]:
    """A WebSocket reset's data, checked as :class:`ResetBody` checks it (the plain cases without pydantic:
    a reset is half of every episode's messages)."""
    plain = all(
        (t := _RESET_TYPES.get(k)) is not None and (v is None or (type(v) is t if t is not int else (
            type(v) is int and v >= 0))) for k, v in data.items())
    if plain:
        return {k: v for k, v in data.items() if v is not None}
    try:
        return ResetBody.model_validate(data).model_dump(exclude_none=True)
    except ValidationError as e:
        raise malformed(f"reset: {first_error(e.errors())}") from None


def first_error(errs: Any) -> str:
    """A validation failure in one line: where and what (and how many more)."""
    errs = list(errs)
    first = errs[0] if errs else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "the body"
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"
