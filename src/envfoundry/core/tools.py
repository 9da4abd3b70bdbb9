"""Typed tools: plain Python callables whose JSON schema comes from their type hints."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .errors import ToolCallError


class _ArgsBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True, frozen=True)
class Tool:
    """A tool the agent may call. The first parameter of ``fn`` receives the episode; the rest
    are the tool's arguments, validated against their type hints before ``fn`` runs."""

    name: str
    fn: Callable[..., Any]
    description: str
    writes: bool
    args_model: type[BaseModel]
    arg_types: dict[str, str]

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format."""
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }

    def parse_args(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Validate raw arguments; raise :class:`ToolCallError` with a message for the agent."""
        if isinstance(arguments, str):
            text = arguments.strip() or "{}"
            try:
                arguments = json.loads(text)
            except json.JSONDecodeError as e:
                raise ToolCallError(
                    f"tool '{self.name}': arguments are not valid JSON ({e.msg} at char {e.pos})"
                ) from None
            except RecursionError:  # the model's mistake, not the environment's
                raise ToolCallError(f"tool '{self.name}': arguments are nested too deeply") from None
        if not isinstance(arguments, dict):
            raise ToolCallError(
                f"tool '{self.name}': arguments must be a JSON object, got {type(arguments).__name__}"
            )
        try:
            model = self.args_model.model_validate(arguments)
        except ValidationError as e:
            try:
                why = self._explain(e)
            except RecursionError:  # the repr of a deeply nested value
                why = f"tool '{self.name}': arguments are nested too deeply"
            raise ToolCallError(why) from None
        except RecursionError:
            raise ToolCallError(f"tool '{self.name}': arguments are nested too deeply") from None
        return {k: getattr(model, k) for k in self.arg_types}

    def _explain(self, err: ValidationError) -> str:
        parts = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else "?"
            if e["type"] == "missing":
                parts.append(f"missing argument `{field}: {self.arg_types.get(field, '?')}`")
            elif e["type"] == "extra_forbidden":
                known = ", ".join(self.arg_types) or "none"
                parts.append(f"unknown argument `{field}` (arguments: {known})")
            else:
                parts.append(
                    f"expects `{field}: {self.arg_types.get(field, '?')}`, got {e['input']!r}"
                    f" ({e['msg']})"
                )
        return f"tool '{self.name}' " + "; ".join(parts)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    writes: bool = False,
    description: str | None = None,
) -> Tool:
    """Build a :class:`Tool` from a function whose first parameter is the episode."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params:
        raise TypeError(
            f"tool {fn.__name__!r} must take the episode as its first parameter, e.g. "
            f"`def {fn.__name__}(ep, ...)`"
        )
    hints = get_type_hints(fn)
    full = get_type_hints(fn, include_extras=True)  # keeps Annotated constraints (Field(ge=1), conint)
    fields: dict[str, Any] = {}
    arg_types: dict[str, str] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__!r}: *args/**kwargs cannot be described to a model")
        if p.name not in hints:
            raise TypeError(
                f"tool {fn.__name__!r}: parameter `{p.name}` needs a type hint so that its "
                "JSON schema can be derived"
            )
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (full[p.name], default)
        arg_types[p.name] = _type_name(hints[p.name])
    tool_name = name or fn.__name__
    model = create_model(f"{tool_name}_args", __base__=_ArgsBase, **fields)
    doc = description if description is not None else inspect.getdoc(fn) or ""
    return Tool(tool_name, fn, doc.strip(), writes, model, arg_types)


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    writes: bool = False,
    description: str | None = None,
) -> Any:
    """Decorator: ``@tool`` or ``@tool(writes=True)`` turns a function into a :class:`Tool`."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return make_tool(f, name=name, writes=writes, description=description)

    return wrap(fn) if fn is not None else wrap
