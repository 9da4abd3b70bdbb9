"""The client of ``envfoundry serve``: :func:`connect` gives a :class:`RemoteEnvironment`, an
:class:`~envfoundry.Environment` that every command takes like a local one.

It imports only :mod:`envfoundry.core` and aiohttp (no server packages). A token is passed as
``token=`` or read from ``$ENVFOUNDRY_TOKEN``; it never goes into a spec, a run or a log.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from .env import RemoteEnvironment, RemoteEpisode
from .errors import EpisodeEnded, RemoteEnvError, RemoteError, RemoteGraderError, RemoteRefused, RemoteUnavailable
from .wire import TOKEN_VAR


def is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://", "ws://", "wss://"))


def connect(url: str, token: str | None = None, **options: Any) -> RemoteEnvironment:
    """The environment served at ``url`` (``http://HOST:PORT``). ``token``: the server's token (default:
    ``$ENVFOUNDRY_TOKEN``). Options: ``busy_wait_s`` (how long a full server is asked again, default
    600) and ``timeout_s`` (to connect, default 30). An unreachable server is a RemoteUnavailable."""
    u = _server_url(url)
    return RemoteEnvironment(u, token if token is not None else os.environ.get(TOKEN_VAR) or None, **options)


def _server_url(url: str) -> str:
    """``url`` as the server's HTTP root; a ValueError when it cannot name a server (no host, a bad port)."""
    u = url.strip().rstrip("/")
    if u.lower().startswith(("ws://", "wss://")):
        u = "http" + u[2:]
    if u.endswith("/ws"):
        u = u[:-3]
    try:
        parts = urlsplit(u)
        ok = is_url(u) and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"not an environment server URL: {url!r} (expected http://HOST:PORT)")
    return u


def load_url(url: str, args: dict[str, Any]) -> RemoteEnvironment:
    """:func:`envfoundry.load`'s hook for URLs (``--env http://HOST:PORT``)."""
    from ..core.errors import EnvLoadError

    if args:
        raise EnvLoadError(f"{url} is a served environment: give its arguments to `envfoundry serve --env-arg`, "
                           f"not to the client (got {', '.join(args)})")
    try:
        _server_url(url)
    except ValueError as e:
        raise EnvLoadError(str(e)) from None
    return connect(url)


__all__ = [
    "EpisodeEnded", "RemoteEnvError", "RemoteEnvironment", "RemoteEpisode", "RemoteError", "RemoteGraderError",
    "RemoteRefused", "RemoteUnavailable", "connect", "is_url", "load_url",
]
