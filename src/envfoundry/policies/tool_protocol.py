"""The text tool-calling protocol, for models without native function calling.

The tools are described in the system message (the environment's system message gets a
``# Tools`` section appended; an environment without one gets a system message of its own): each
tool's name, description and the JSON schema of its arguments, one JSON object per line. The
model calls a tool by writing, anywhere in its reply, one or more blocks::

    <tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>

(``"parameters"`` is accepted for ``"arguments"``; a last block left unclosed is read to the end
of the reply). Each block becomes one :class:`~envfoundry.core.messages.ToolCall`; the reply's
text, blocks included, stays the assistant message's content. Results go back as one user
message per turn holding a block per call::

    <tool_result name="add">
    5
    </tool_result>

A block the policy cannot read is the model's mistake, never an infrastructure error: it still
becomes a call, so that the environment answers with an error and the episode goes on. When the
block is not JSON but a ``"name"`` can be read from it, the call gets that name and the block's
raw text as its arguments, and the tool reports the JSON error and where it is; a block without
a usable name becomes a call to ``__invalid__`` (the environment answers "unknown tool"). Each
such problem is also listed under ``tool_call_errors`` in the turn's policy info.

:func:`text_messages` renders a conversation in this protocol, :func:`tools_system_prompt` the
tools section, :func:`parse_tool_calls` reads a reply's blocks. Used by
:class:`~envfoundry.policies.openai.OpenAIPolicy` (``tool_mode="text"``) and by training, which
must render episodes exactly as the policy would.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..core.messages import Message, ToolCall

#: the name given to a text-protocol tool call that names no tool
INVALID_TOOL = "__invalid__"

_TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_FENCE = re.compile(r"\A```[A-Za-z]*\s*(.*?)\s*```\Z", re.DOTALL)


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def render_tool_call(call: ToolCall) -> str:
    """A call as a text-protocol block."""
    args: Any = call.arguments
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            pass  # keep the raw string
    return "<tool_call>" + json.dumps({"name": call.name, "arguments": args},
                                      ensure_ascii=False) + "</tool_call>"


def text_messages(messages: list[Message], tools_prompt: str) -> list[dict[str, Any]]:
    """Messages for a model without native tools: tool calls as ``<tool_call>`` blocks in the
    assistant's text, results as ``<tool_result>`` blocks in user messages."""
    out: list[dict[str, Any]] = []
    after_result = False
    for m in messages:
        role = m.role
        if role == "tool":
            block = f'<tool_result name="{_attr(m.name or "")}">\n{m.content}\n</tool_result>'
            if after_result:
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
            after_result = True
            continue
        after_result = False
        content = m.content
        if role == "assistant" and m.tool_calls and "<tool_call>" not in content:
            blocks = "\n".join(render_tool_call(c) for c in m.tool_calls)
            content = f"{content}\n{blocks}" if content else blocks
        out.append({"role": role, "content": content})
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{tools_prompt}"
    else:
        out.insert(0, {"role": "system", "content": tools_prompt})
    return out


def tools_system_prompt(schemas: list[dict[str, Any]]) -> str:
    """The text-protocol description of ``schemas`` (OpenAI function-tool schemas)."""
    lines = [
        "# Tools",
        "",
        "You can call the tools listed below. To call a tool, write a block like this, with the "
        "tool's arguments as a JSON object:",
        '<tool_call>{"name": "tool_name", "arguments": {"argument": "value"}}</tool_call>',
        "Write several blocks to call several tools. The results come back in the next message "
        'as <tool_result name="tool_name">...</tool_result> blocks. When you need no more tool '
        "calls, reply without any <tool_call> block.",
        "",
        "Available tools (name, description and the JSON schema of the arguments):",
    ]
    for s in schemas:
        fn = s.get("function", s)
        lines.append(json.dumps(
            {"name": fn.get("name"), "description": fn.get("description", ""),
             "parameters": fn.get("parameters", {})},
            ensure_ascii=False,
        ))
    return "\n".join(lines)


def parse_tool_calls(text: str) -> tuple[list[ToolCall], list[str]]:
    """Read the ``<tool_call>`` blocks of a reply: (calls, problems).

    Every block gives one call, readable or not (see the module documentation); ``problems``
    says what was wrong with each unreadable block.
    """
    calls: list[ToolCall] = []
    problems: list[str] = []
    for i, m in enumerate(_TOOL_CALL.finditer(text), 1):
        raw = m.group(1).strip()
        fenced = _FENCE.match(raw)
        if fenced:
            raw = fenced.group(1)
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as e:
            name = _name_in(raw)
            calls.append(ToolCall(name or INVALID_TOOL, raw))
            why = f"{e.msg} at char {e.pos}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            problems.append(f"tool call {i}: not valid JSON ({why})" + ("" if name else "; no tool name found"))
            continue
        name = obj.get("name") if isinstance(obj, dict) else None
        if not isinstance(name, str) or not name.strip():
            calls.append(ToolCall(INVALID_TOOL, raw))
            problems.append(f'tool call {i}: expected a JSON object with a "name" and '
                            f'"arguments", got {_short(raw, 80)}')
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if args is None:
            args = {}
        if not isinstance(args, (str, dict)):
            try:
                args = json.dumps(args)  # the tool reports that arguments must be an object
            except (ValueError, RecursionError):
                args = "(arguments nested too deeply)"
        calls.append(ToolCall(name.strip(), args))
    return calls, problems


def _name_in(raw: str) -> str:
    m = _NAME.search(raw)
    if not m:
        return ""
    try:
        return str(json.loads(f'"{m.group(1)}"')).strip()
    except ValueError:
        return m.group(1).strip()
