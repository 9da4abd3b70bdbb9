"""Tasks are data: an id that hashes everything that defines them, a split and metadata."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that ids and world hashes are taken of."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, *, length: int = 16) -> str:
    return hashlib.blake2b(canonical_json(obj).encode(), digest_size=32).hexdigest()[:length]


class Task(BaseModel):
    """One task of an environment.

    ``prompt`` is what the agent sees first, after the optional ``system`` message and
    ``examples`` (worked (user, assistant) pairs shown as earlier chat turns: small models follow
    a format from examples far more often than from an instruction). ``data`` is private to the
    environment (gold answer, grader configuration, world parameters): it is never shown to a
    policy, only to the environment, its graders and its reference solution. ``metadata`` holds descriptive facts such
    as difficulty knobs. The ``id`` is a content hash of env name, env version, prompt, data and
    world, so any change to what defines a task changes its id.
    """

    model_config = ConfigDict(frozen=True)

    env: str
    env_version: str
    split: str
    prompt: str
    system: str | None = None
    examples: tuple[tuple[str, str], ...] = ()
    data: dict[str, Any] = Field(default_factory=dict)
    world: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str = ""

    @model_validator(mode="after")
    def _set_id(self) -> Task:
        expected = content_hash(
            {
                "env": self.env,
                "env_version": self.env_version,
                "prompt": self.prompt,
                "system": self.system,
                "examples": self.examples,
                "data": self.data,
                "world": self.world,
            }
        )
        if self.id and self.id != expected:
            raise ValueError(
                f"task id {self.id!r} does not match its content (expected {expected!r}); "
                "a task id is a content hash and cannot be set by hand"
            )
        object.__setattr__(self, "id", expected)
        return self
