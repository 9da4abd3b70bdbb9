"""What a served environment says about itself: description, tools, graders, splits, version and content hash."""

from __future__ import annotations

from typing import Any

from ..core.env import Environment
from ..core.version import __version__
from ..remote import wire


def content_hash(env: Environment) -> tuple[str, dict[str, int]]:
    """(the hash of the environment's tasks, split -> number of tasks): the hub's rule
    (:func:`envfoundry.hub.identity.tasks_hash`), so a served environment and its scorecard name the
    same tasks by the same hash, on any machine."""
    from ..hub.identity import tasks_hash

    return tasks_hash(env)


def describe(env: Environment, *, spec: str, max_sessions: int, lease_s: float) -> dict[str, Any]:
    """``GET /info``: everything a client needs to stand in for the environment."""
    return {
        "name": env.name,
        "version": env.version,
        "description": env.description,
        "splits": list(env.splits),
        "default_split": "test" if "test" in env.splits else env.splits[0],
        "max_turns": env.max_turns,
        "answer_format": env.answer_format,
        "has_reference": env.has_reference,
        "has_mutations": env.mutations is not None,
        "tools": [{"name": t.name, "writes": t.writes, "schema": t.schema()} for t in env.tools.values()],
        "graders": [{"name": n, "weight": w} for n, w, _ in env.graders],
        "spec": spec,
        "protocol": wire.PROTOCOL,
        "envfoundry": __version__,
        "max_sessions": max_sessions,
        "lease_s": lease_s,
    }


def metadata(env: Environment) -> dict[str, Any]:
    """OpenEnv's ``GET /metadata`` shape."""
    return {"name": env.name, "description": env.description, "version": env.version, "author": None,
            "documentation_url": None, "readme_content": None}


#: OpenEnv's ``GET /schema``: what an action, an observation and the state look like
SCHEMA = {
    "action": {
        "type": "object",
        "properties": {
            "content": {"type": "string", "description": "the agent's text (its final answer, or words to a user)"},
            "tool_calls": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "arguments": {"anyOf": [{"type": "object"}, {"type": "string"}]}}, "required": ["name"]}},
        },
    },
    "observation": {
        "type": "object",
        "properties": {"messages": {"type": "array", "items": {"type": "object"},
                                    "description": "new chat messages (OpenAI format) for the agent"}},
    },
    "state": {
        "type": "object",
        "properties": {"session_id": {"type": "string"}, "task_id": {"type": "string"},
                       "turns": {"type": "integer"}, "step_count": {"type": "integer"},
                       "done": {"type": "boolean"}, "messages": {"type": "array"}},
    },
}


def task_page(tasks: Any, *, split: str, seed: int, offset: int, limit: int) -> dict[str, Any]:
    n = len(tasks)
    end = min(n, offset + limit)
    return {"split": split, "seed": seed, "total": n, "offset": offset,
            "tasks": [wire.task_to_dict(tasks[i]) for i in range(offset, end)]}
