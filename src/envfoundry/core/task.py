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

    ``env`` and ``env_version`` may be left out: the :class:`~envfoundry.Environment` whose task
    source made the task fills in its own name and version (and refuses a task that names another),
    so a task source states neither. The id is the same as if they had been written.
    """

    model_config = ConfigDict(frozen=True)

    env: str = ""
    env_version: str = ""
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

    def for_env(self, name: str, version: str, *, check_version: bool = True) -> Task:
        """This task as a task of environment ``name`` ``version``: itself when it already says so,
        a copy with what it left out filled in (and its id computed again). A task that names
        another environment, or (with ``check_version``) another version, is a ValueError."""
        own_version = self.env_version if (self.env_version and not check_version) else version
        if self.env == name and self.env_version == own_version:
            return self
        for field, mine, theirs in (("env", self.env, name), ("env_version", self.env_version, own_version)):
            if mine and mine != theirs:
                raise ValueError(
                    f"task {self.id} has {field}={mine!r}, but its environment is {name!r} version "
                    f"{version!r}; leave env and env_version out of tasks (the environment fills them in)"
                )
        # a shallow copy: data and world are shared with the original, which nobody mutates
        task = self.model_copy(update={"env": name, "env_version": own_version, "id": ""})
        return task._set_id()
