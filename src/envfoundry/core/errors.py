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


class StoreError(UsageError):
    """The run directory cannot be used as asked (not empty without --resume, manifest mismatch)."""
