"""Turn a model spec such as ``scripted:oracle``, ``local`` or ``openai:NAME`` into a policy."""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import UsageError
from ..core.policy import Policy
from .scripted import SCRIPTED

SPECS = "scripted:oracle|noop|random, local, local:PATH.gguf, openai:MODEL_NAME"


def resolve_policy(
    spec: str,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    sampling: dict[str, Any] | None = None,
    tool_mode: str = "auto",
    slots: int | None = None,
) -> Policy:
    """Build the policy a spec names. ``sampling`` holds temperature, top_p, max_tokens, seed;
    ``slots`` is the number of llama.cpp server processes of a ``local`` model (None: its default)."""
    kind, _, rest = spec.partition(":")
    if slots is not None:
        if kind != "local":
            raise UsageError(f"--slots applies to --model local or local:PATH.gguf, not {spec!r}")
        if slots < 1:
            raise UsageError(f"--slots must be >= 1, got {slots}")
    if kind == "scripted":
        cls = SCRIPTED.get(rest)
        if cls is None:
            raise UsageError(f"unknown scripted policy {rest!r} (choose from: {', '.join(SCRIPTED)})")
        return cls()
    if kind not in ("local", "openai"):
        raise UsageError(f"unknown model spec {spec!r}; use {SPECS}")
    from pydantic import ValidationError

    from .openai import OpenAIPolicy, SamplingOptions

    try:
        opts = SamplingOptions(**{k: v for k, v in (sampling or {}).items() if v is not None})
    except ValidationError as e:
        raise UsageError(f"bad sampling option: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    if kind == "local":
        from pathlib import Path

        from .embedded import LocalPolicy

        if rest and not Path(rest).is_file():
            raise UsageError(f"model file {rest!r} does not exist")
        return LocalPolicy(rest or None, sampling=opts, tool_mode=tool_mode, slots=slots)  # type: ignore[arg-type]
    if not rest:
        raise UsageError("openai: needs a model name, e.g. --model openai:gpt-4o-mini")
    if base_url is None:
        raise UsageError(f"--model {spec} needs --base-url (the server's API root ending in /v1)")
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UsageError(f"environment variable {api_key_env!r} (from --api-key-env) is not set")
    return OpenAIPolicy(rest, base_url=base_url, api_key=key, api_key_env=api_key_env or None, sampling=opts,
                        tool_mode=tool_mode)  # type: ignore[arg-type]
