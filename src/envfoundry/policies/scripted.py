"""Scripted policies: probes that need no model.

- ``oracle`` asks the environment for its reference solution, step by step (privileged: it is
  how we prove every task solvable, and it uses nothing else the agent could not see).
- ``noop`` answers with an empty message.
- ``random`` makes random valid tool calls and random answers, seeded by the episode.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.env import Episode
from ..core.messages import Message, ToolCall
from ..core.policy import PolicyOutput


class _Scripted:
    name = "scripted"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"spec": f"scripted:{self.name}"}


class OraclePolicy(_Scripted):
    name = "oracle"

    async def act(self, ep: Episode) -> PolicyOutput:
        return PolicyOutput(ep.env.reference_action(ep))


class NoopPolicy(_Scripted):
    name = "noop"

    async def act(self, ep: Episode) -> PolicyOutput:
        return PolicyOutput(Message("assistant", ""))


_NUM = re.compile(r"-?\d+")


def _random_value(schema: dict[str, Any], rng: Any) -> Any:
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        return _random_value(rng.choice(schema["anyOf"]), rng)
    t = schema.get("type")
    if t == "integer":
        return rng.randint(int(schema.get("minimum", -5)), int(schema.get("maximum", 20)))
    if t == "number":
        return round(rng.uniform(-5, 20), 2)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "array":
        return [_random_value(schema.get("items", {}), rng) for _ in range(rng.randint(0, 2))]
    if t == "null":
        return None
    return rng.choice(["a", "socks", "1", "yes", "blue", "M"])


class RandomPolicy(_Scripted):
    """Random but valid: tool calls match their schemas; answers are random numbers or words
    from the prompt, in the environment's answer format when it declares one."""

    name = "random"

    async def act(self, ep: Episode) -> PolicyOutput:
        rng = ep.rng
        schemas = ep.env.tool_schemas()
        if schemas and rng.random() < 0.7:
            fn = rng.choice(schemas)["function"]
            props = fn["parameters"].get("properties", {})
            required = set(fn["parameters"].get("required", []))
            args = {
                k: _random_value(v, rng)
                for k, v in props.items()
                if k in required or rng.random() < 0.5
            }
            call = ToolCall(name=fn["name"], arguments=args, id=f"r{ep.turns}")
            return PolicyOutput(Message("assistant", "", [call]))
        fmt = getattr(ep.env, "answer_format", None)
        nums = _NUM.findall(ep.task.prompt)
        guess = str(rng.randint(-20, 200)) if not nums or rng.random() < 0.5 else rng.choice(nums)
        text = fmt.format(answer=guess) if fmt else guess
        return PolicyOutput(Message("assistant", text))


SCRIPTED = {"oracle": OraclePolicy, "noop": NoopPolicy, "random": RandomPolicy}
