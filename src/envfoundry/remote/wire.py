"""The wire format shared by ``envfoundry serve`` and its client: plain JSON, one shape over HTTP and WebSocket.

An episode over the wire (WebSocket ``/ws``, one connection = one session; the same bodies over
HTTP ``/sessions``)::

    -> {"type": "reset", "data": {"task_id": ..., "seed": 7}}
    <- {"type": "observation", "data": {"observation": {"messages": [...]}, "reward": null, "done": false, ...}}
    -> {"type": "step", "data": {"content": "...", "tool_calls": [...]}}
    <- {"type": "observation", "data": {..., "done": true, "reward": 1.0, "outcome": "completed", "score": {...}}}

An error is ``{"type": "error", "data": {"status": 409, "code": "episode_ended", "message": ...}}`` and
the connection stays open. These are OpenEnv's WebSocket messages (``reset``, ``step``, ``state``,
``close``; ``observation``/``reward``/``done``), so OpenEnv's own client can drive a served environment;
the fields beyond them (``outcome``, ``score``, ``world_diff``, ...) are envfoundry's.

This module imports only :mod:`envfoundry.core`: the client needs no server packages.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from typing import Any

from ..core.env import exception_line
from ..core.messages import Message, ToolCall
from ..core.outcome import Score
from ..core.task import Task

#: bumped when a message changes meaning; the server states it in ``GET /info``
PROTOCOL = 1
#: the header a token travels in (``Authorization: Bearer TOKEN``)
AUTH_HEADER = "Authorization"
#: where the client reads a server's token when none is passed (a secret never goes into a spec or a run)
TOKEN_VAR = "ENVFOUNDRY_TOKEN"


class WireError(ValueError):
    """A message that does not have the expected shape (the server answers 422 with this text)."""


try:  # optional: several times faster than the standard library on every message
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the installation
    _orjson = None


def dumps(obj: Any) -> str:
    """Compact JSON; a value JSON cannot hold is written as its ``str`` (as run records are)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, default=str, option=_orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, ValueError):  # a number orjson refuses (beyond 64 bits): the standard library's way
            pass
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def loads(text: str | bytes) -> Any:
    """Parse JSON (a ValueError when it is not)."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass  # the standard library's message says where, as the client expects
    return json.loads(text)


# ------------------------------------------------------------------ actions
def action_to_dict(action: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": "assistant", "content": action.content}
    if action.tool_calls:
        d["tool_calls"] = [c.to_dict() for c in action.tool_calls]
    return d


def action_from_dict(d: Any) -> Message:
    """An assistant message from ``{"content": ..., "tool_calls": [...]}`` (``role`` optional and
    ``assistant``; OpenEnv-style ``{"message": ...}`` is taken as the content). Raises WireError."""
    if not isinstance(d, Mapping):
        raise WireError(f"an action must be a JSON object, got {type(d).__name__}")
    known = {"role", "content", "message", "tool_calls"}
    extra = sorted(k for k in d if k not in known)
    if extra:
        raise WireError(f"unknown action field(s) {', '.join(map(repr, extra))} (fields: content, tool_calls, role)")
    role = d.get("role", "assistant")
    if role != "assistant":
        raise WireError(f"an action is the agent's message: role must be 'assistant', got {role!r}")
    content = d.get("content", d.get("message", ""))
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise WireError(f"action content must be a string, got {type(content).__name__}")
    calls_in = d.get("tool_calls") or []
    if not isinstance(calls_in, list):
        raise WireError(f"tool_calls must be a list, got {type(calls_in).__name__}")
    calls = []
    for i, c in enumerate(calls_in):
        if not isinstance(c, Mapping):
            raise WireError(f"tool_calls[{i}] must be an object with name and arguments")
        if "function" in c and isinstance(c["function"], Mapping):  # OpenAI's nesting
            c = {"id": c.get("id", ""), **c["function"]}
        name, args, cid = c.get("name"), c.get("arguments", {}), c.get("id") or ""
        if not isinstance(name, str) or not name:
            raise WireError(f"tool_calls[{i}].name must be a non-empty string")
        if not isinstance(args, (str, dict)):
            raise WireError(f"tool_calls[{i}].arguments must be a JSON object or its text, got {type(args).__name__}")
        if not isinstance(cid, str):
            raise WireError(f"tool_calls[{i}].id must be a string")
        calls.append(ToolCall(name=name, arguments=args, id=cid))
    return Message("assistant", content, calls)


def messages_from(items: Any) -> list[Message]:
    if not isinstance(items, list):
        raise WireError("messages must be a list")
    try:
        return [Message.from_dict(m) for m in items]
    except (KeyError, TypeError, AttributeError) as e:
        raise WireError(f"a message is malformed: {type(e).__name__}: {e}") from None


# ------------------------------------------------------------------ scores and tasks
def score_to_dict(s: Score) -> dict[str, Any]:
    return s.to_dict()


def score_from_dict(d: Mapping[str, Any]) -> Score:
    return Score(value=d["value"], breakdown=dict(d.get("breakdown") or {}), explanation=d.get("explanation") or "",
                 passed=d.get("passed"))


def task_to_dict(t: Task) -> dict[str, Any]:
    return t.model_dump()


def task_from_dict(d: Mapping[str, Any]) -> Task:
    """The task as the server defines it. Task data that JSON cannot hold exactly arrives as text, so
    its content hash would differ: the server's id is kept then (the server resolves tasks by id)."""
    try:
        return Task.model_validate(d)
    except ValueError:
        return Task.model_construct(**{k: d[k] for k in Task.model_fields if k in d})


# ------------------------------------------------------------------ worlds
def world_changes(before: Any, after: Any) -> list[list[Any]]:
    """``[table, key, record or None]`` for every record that differs between two worlds: what a
    copy of ``before`` needs to become ``after`` exactly (a deleted record is None)."""
    seen: dict[tuple[str, str], None] = {}
    for c in before.diff(after):
        seen.setdefault((c.table, c.key), None)
    out = []
    for t, k in seen:
        r = after.get(t, k)
        out.append([t, k, None if r is None else dict(r)])
    return out


def apply_changes(world: Any, changes: Any) -> None:
    """Apply :func:`world_changes` to ``world`` (a :class:`~envfoundry.core.world.World`)."""
    for t, k, r in changes:
        if r is None:
            if world.get(t, k) is not None:
                world.delete(t, k)
        else:
            world.upsert(t, k, r)


# ------------------------------------------------------------------ errors of the environment's code
crash_summary = exception_line  # the one home of this format: core.env


def crash_detail(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


__all__ = [
    "AUTH_HEADER", "PROTOCOL", "TOKEN_VAR", "WireError", "action_from_dict", "action_to_dict", "apply_changes",
    "crash_detail", "crash_summary", "dumps", "messages_from", "score_from_dict", "score_to_dict", "task_from_dict",
    "task_to_dict", "world_changes",
]
