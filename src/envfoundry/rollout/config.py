"""The typed options of a run: :class:`RunConfig` (what it samples and how it runs) and
:class:`ModelOptions` (where the model server is and how it samples). The library and the command
line build the same two objects; a field left ``None`` takes the default, or on ``--resume`` the
stored value (:mod:`envfoundry.core.resume`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import UsageError

#: fields whose command-line flag is not ``--`` + the field's name with dashes
_FLAGS = {"timeout_s": "--timeout", "env_args": "--env-arg"}


def _usage(e: ValidationError, what: str) -> UsageError:
    """A pydantic error as one line naming the option by its flag and its Python name
    (``--limit (limit): Input should be greater than or equal to 1, got 0``)."""
    first = e.errors()[0]
    field = ".".join(str(x) for x in first["loc"])
    if first["type"] == "extra_forbidden":
        return UsageError(f"unknown {what} option {field!r}")
    flag = "--model-seed" if (what, field) == ("model", "seed") else _FLAGS.get(field, "--" + field.replace("_", "-"))
    why = first["msg"].removeprefix("Value error, ")
    return UsageError(f"{flag} ({field}): {why}, got {first.get('input')!r}")


MaxErrors = int | float
"""How many errored rollouts a run tolerates: an int is a count, a float in [0, 1] a share of the
rollouts. The default 0 tolerates none (after each rollout's retries), as inspect_ai does."""


def check_max_errors(value: MaxErrors) -> MaxErrors:
    """``value`` if it is a valid tolerance (see :data:`MaxErrors`), else a UsageError. Any integer
    type (``numpy.int64`` too) is a count, any other real number a share."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"max_errors must be a count (int) or a share (float in [0, 1]), got {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise UsageError(f"max_errors must be >= 0, got {value}")
        return int(value)
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UsageError(f"max_errors as a share must be a number from 0 to 1, got {value}")
    return value


class RunConfig(BaseModel):
    """What a run samples and how it runs. ``None``: the default (noted per field), or on resume the
    stored value; a resumed run refuses a field given with another value than it was stored with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str | None = Field(None, description="task split (default: test; `calibrated` with calibration)")
    limit: int | None = Field(None, ge=1, description="the split's first N tasks (default: all)")
    samples: int | None = Field(None, ge=1, description="rollouts per task, a GRPO group (default: 1)")
    seed: int | None = Field(None, description="run seed: tasks and rollouts (default: 0)")
    task_seed: int | None = Field(None, description="task source seed (default: seed)")
    timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="seconds per rollout (default: none)")
    max_turns: int | None = Field(None, ge=1, description="lower the environment's turn limit")
    env_args: dict[str, str] | None = Field(None, description="KEY=VALUE strings for the environment factory")
    calibration: str | Path | None = Field(None, description="a calibrate output, for split `calibrated`")
    task_ids: list[str] | None = Field(None, description="narrow the selection to these ids, in this order")
    sample_offset: int = Field(0, ge=0, description="samples are numbered sample_offset .. + samples - 1")
    concurrency: int | None = Field(None, ge=1, description="rollouts in flight (default: 32, or the stored one)")
    workers: int = Field(1, ge=1, description="processes sharing the rollouts (backend ray: actors; 1: one per CPU)")
    backend: Literal["local", "ray"] = Field("local", description="where rollouts run: this machine, or a Ray cluster")
    ray_address: str | None = Field(None, description="backend ray: auto (default), local, ray://HOST:PORT, HOST:PORT")
    max_errors: int | float = Field(0, description="errored rollouts tolerated: a count, or a share in [0, 1]")
    strict_limit: bool = Field(False, description="a limit larger than the split is an error (else a warning)")

    @field_validator("max_errors", mode="before")
    @classmethod
    def _tolerance(cls, v: Any) -> int | float:
        return check_max_errors(v)  # its UsageError passes through pydantic with its own message

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, v: str | None) -> str | None:
        from .ray_backend import parse_address

        return None if v is None else parse_address(v)  # a UsageError naming the flag

    @model_validator(mode="after")
    def _ray_only(self) -> RunConfig:
        if self.ray_address is not None and self.backend != "ray":
            raise UsageError("--ray-address (ray_address) is for --backend ray (backend='ray')")
        return self

    @classmethod
    def of(cls, config: RunConfig | None = None, options: dict[str, Any] | None = None) -> RunConfig:
        """``config`` with ``options`` (keyword arguments of :func:`~envfoundry.evaluate`) on top;
        a bad or unknown option is a :class:`UsageError` naming it."""
        try:
            base = config.model_dump(exclude_unset=True) if config is not None else {}
            return cls(**{**base, **(options or {})})
        except ValidationError as e:
            raise _usage(e, "run") from None


class ModelOptions(BaseModel):
    """The model side of a run (for ``local``, ``openai:NAME``; scripted policies ignore it).
    ``None``: the default, or on resume the stored value (``base_url``, ``api_key_env``, ``slots``
    may change on resume: they say where and how the server runs, not what it samples)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(None, description="OpenAI-compatible API root (…/v1)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never stored)")
    tool_mode: Literal["auto", "native", "text"] | None = Field(None, description="tool calling (default: auto)")
    temperature: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(None, ge=1, le=2**31 - 1, description="tokens per model turn")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="a fixed sampling seed (default: per rollout)")
    slots: int | None = Field(None, ge=1, le=64, description="llama.cpp server processes of a local model")

    @classmethod
    def of(cls, options: ModelOptions | dict[str, Any] | None) -> ModelOptions:
        """From a ModelOptions, a flat dict of its fields, or the older nested shape
        (``{"base_url": ..., "sampling": {"temperature": ...}}``); a bad value is a UsageError."""
        if isinstance(options, ModelOptions):
            return options
        flat = dict(options or {})
        flat.update(flat.pop("sampling", None) or {})
        try:
            return cls(**{k: v for k, v in flat.items() if v is not None})
        except ValidationError as e:
            raise _usage(e, "model") from None

    def resolve_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~envfoundry.policies.resolve_policy` (what is set)."""
        sampling = {k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens", "seed")}
        out: dict[str, Any] = {k: getattr(self, k) for k in ("base_url", "api_key_env", "tool_mode", "slots")}
        out["sampling"] = sampling
        return {k: v for k, v in out.items() if v is not None}
