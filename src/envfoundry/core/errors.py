"""Exceptions with messages a user can act on."""

from __future__ import annotations


class EnvfoundryError(Exception):
    """Base class of every error envfoundry raises on purpose."""


class UsageError(EnvfoundryError):
    """Bad input from the user: unknown environment, bad option, unreadable file (exit code 2)."""


class EnvLoadError(UsageError):
    """An environment spec could not be resolved or its file could not be imported."""


class ToolError(EnvfoundryError):
    """Raised by a tool to tell the agent its call failed (out of stock, not found, ...).

    The message goes back to the agent as the tool's observation; the episode goes on.
    Any other exception raised by a tool is a bug in the environment and ends the rollout
    as ``env_error``.
    """


class ToolCallError(ToolError):
    """The agent's call itself was bad: unknown tool, missing or mistyped arguments."""


class GraderUndecided(EnvfoundryError):
    """A grader could not reach a verdict (e.g. a judge timed out); the rollout is a grader_error."""


class PolicyError(EnvfoundryError):
    """The policy could not produce an action for infrastructure reasons (after retries)."""


class ServerUnreachable(PolicyError):
    """A request's retries ran out and the last could not connect to the model server at all: it
    is down (a router of several servers stops sending it requests)."""


class ModelServerDied(EnvfoundryError):
    """A model server that this run started (the local model) is down: the run stops (exit code 1)
    rather than record rollouts against a dead server. The stored rollouts are kept for ``--resume``."""


class StoreError(UsageError):
    """The run directory cannot be used as asked (not empty without --resume, manifest mismatch)."""


class RunWriteError(EnvfoundryError):
    """A run's records could not be written (a full disk, a file size limit): the machine's fault,
    not the input's (exit code 1). What was stored before is kept, and ``--resume`` continues."""


def reason(e: BaseException) -> str:
    """A one-line reason for a file that failed to load: for a pydantic ValidationError its first
    error (where and what) and how many there are, without pydantic's help links; else ``str(e)``."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            items = errors()
        except Exception:  # noqa: BLE001 - not a pydantic error after all
            items = None
        if items:
            first = items[0]
            where = ".".join(map(str, first.get("loc", ()))) or "the document"
            more = f" (and {len(items) - 1} more problem(s))" if len(items) > 1 else ""
            return f"{where}: {first.get('msg', 'invalid')}{more}"
    return " ".join(str(e).split())
