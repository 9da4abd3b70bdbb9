"""Messages exchanged between a policy and an environment (OpenAI chat format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class ToolCall:
    """One call the agent asks for. ``arguments`` is the raw JSON text the model wrote, or a
    dict when the policy built it directly; either way the environment validates it."""

    name: str
    arguments: str | dict[str, Any]
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class Message:
    """A chat message. ``tool_calls`` only on assistant messages, ``tool_call_id``/``name`` only
    on tool results."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        return cls(
            role=d["role"],
            content=d.get("content") or "",
            tool_calls=[
                ToolCall(name=c["name"], arguments=c.get("arguments", {}), id=c.get("id", ""))
                for c in d.get("tool_calls") or []
            ],
            tool_call_id=d.get("tool_call_id"),
            name=d.get("name"),
        )


def system(content: str) -> Message:
    return Message("system", content)


def user(content: str) -> Message:
    return Message("user", content)


def assistant(content: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
    return Message("assistant", content, tool_calls or [])


#: An action is the assistant message the policy produced: text, tool calls, or both.
Action = Message
