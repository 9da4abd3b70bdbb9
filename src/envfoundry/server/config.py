"""How ``envfoundry serve`` runs: address, capacity, leases, the token, worker threads."""

from __future__ import annotations

import ipaddress
import os

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import UsageError


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeConfig(BaseModel):
    """A server's settings. ``max_sessions``: open sessions at most (one more gets 503 with
    ``Retry-After``); ``lease_s``: an HTTP session ends this long after its last request (a WebSocket's
    ends with its connection); ``threads``: worker threads for environment code (0: always on the event
    loop); ``inline_s``: environment code runs on the event loop until its operations (a reset, a step, a
    grading) take longer than this (three of the last hundred), then on the threads (0: always there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str = ""
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    max_sessions: int = Field(1024, ge=1, le=1_000_000)
    lease_s: float = Field(300.0, gt=0, le=7 * 24 * 3600)
    threads: int = Field(8, ge=0, le=1024)
    inline_s: float = Field(0.005, ge=0, le=60)
    token: str | None = Field(None, repr=False)
    allow_remote: bool = False

    def check(self) -> ServeConfig:
        """Refuse an address other than loopback without ``allow_remote`` and a token (UsageError)."""
        if not is_loopback(self.host):
            if not self.allow_remote:
                raise UsageError(f"--host {self.host} listens beyond this machine: add --allow-remote (and a token "
                                 "with --token-env VAR) to do that on purpose")
            if not self.token:
                raise UsageError(f"--host {self.host} with --allow-remote needs a token: --token-env VAR names an "
                                 "environment variable that holds it (clients send it as 'Authorization: Bearer')")
        return self


def token_from_env(var: str | None) -> str | None:
    """The token in the environment variable ``var`` (a UsageError when it is unset or too short)."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise UsageError(f"--token-env {var}: the environment variable {var} is not set (or empty)")
    if len(value) < 8:
        raise UsageError(f"--token-env {var}: a token needs at least 8 characters")
    return value
