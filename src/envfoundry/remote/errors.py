"""What can go wrong talking to a served environment, each as its own exception.

The rollout engine classifies them like any exception of an environment: a failure during reset or
step (:class:`RemoteUnavailable`, :class:`RemoteEnvError`, a refusal) is the rollout's ``env_error``,
one during grading (:class:`RemoteGraderError`) its ``grader_error``; neither is ever a score, and
``--resume`` runs those rollouts again.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import EnvfoundryError
from ..core.outcome import Outcome


class RemoteError(EnvfoundryError):
    """Base class: ``status`` and ``code`` are the server's when it answered."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class RemoteUnavailable(RemoteError, ConnectionError):
    """The server could not be reached, or the connection dropped (a restarted or killed server)."""


class RemoteRefused(RemoteError):
    """The server refused a request (a 4xx: unknown session or task, expired lease, bad input, no token)."""


class EpisodeEnded(RemoteRefused, RuntimeError):
    """A step after the episode ended (a RuntimeError, as for a local episode)."""


class RemoteEnvError(RemoteError):
    """The environment's own code raised on the server (its message and the server's traceback)."""


class RemoteGraderError(RemoteError):
    """A grader raised on the server."""


def refusal(data: dict[str, Any], where: str) -> RemoteError:
    """The exception for an error body ``{"status", "code", "message"}`` (a 5xx ``env_error`` is the
    environment's exception, with the server's traceback as a note)."""
    status, code = data.get("status"), str(data.get("code") or "error")
    message = str(data.get("message") or data.get("detail") or "no message")
    cls: type[RemoteError]
    if code == Outcome.ENV_ERROR:
        cls = RemoteEnvError
    elif code == "episode_ended":
        cls = EpisodeEnded
    elif isinstance(status, int) and 400 <= status < 500:
        cls = RemoteRefused
    else:
        cls = RemoteUnavailable
    e = cls(f"{message}" if code == Outcome.ENV_ERROR else f"{where}: {message} ({status} {code})", status=status,
            code=code)
    if data.get("traceback"):
        e.add_note(f"on the server:\n{data['traceback']}")
    return e
