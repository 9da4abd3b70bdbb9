"""Episode messages as chat-template input for a local model, and generated text back as an action.

Environments with tools use the text tool protocol of :mod:`envfoundry.policies.openai`
(``<tool_call>`` blocks in the assistant's text, ``<tool_result>`` blocks in user messages), so
models whose chat template knows nothing of tools (SmolLM2's) can still act; the same rendering is
used when training and when evaluating, so the model sees one format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.messages import Message
from ..policies.tool_protocol import parse_tool_calls, text_messages, tools_system_prompt


def chat_dicts(messages: Sequence[Message], schemas: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """``[{"role", "content"}]`` for a chat template; tool calls and results as text when there are tools."""
    if schemas:
        return text_messages(list(messages), tools_system_prompt(list(schemas)))
    return [{"role": m.role, "content": m.content} for m in messages]


def render(tokenizer: Any, chat: list[dict[str, Any]], *, generation_prompt: bool = True) -> str:
    """The chat template applied to ``chat`` (text, not tokens)."""
    return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt))


def to_action(text: str, *, has_tools: bool) -> tuple[Message, list[str]]:
    """Generated text as an assistant action: (message, problems with its tool-call blocks)."""
    if has_tools and "<tool_call>" in text:
        calls, problems = parse_tool_calls(text)
        return Message("assistant", text, calls), problems
    return Message("assistant", text), []
