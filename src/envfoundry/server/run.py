"""Running the app on uvicorn: bind first (port 0 picks a free one), say where, then serve until stopped."""

from __future__ import annotations

import socket
from collections.abc import Callable

from ..core.env import Environment
from ..core.errors import UsageError
from .config import ServeConfig


def _require() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UsageError(f'envfoundry serve needs the server packages ({e.name} is missing): '
                         'pip install "envfoundry[serve]"') from None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (a UsageError naming the address when it is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(env: Environment, config: ServeConfig, *, announce: Callable[[str], None] = print) -> None:
    """Serve ``env`` until interrupted; ``announce`` receives the URL once the socket listens."""
    _require()
    import uvicorn

    from .app import make_app

    config.check()
    app = make_app(env, config)
    host = "127.0.0.1" if config.host == "localhost" else config.host
    sock = bind(host, config.port)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", ws_per_message_deflate=False,
        timeout_graceful_shutdown=2, ws_ping_interval=20.0, ws_ping_timeout=20.0, timeout_keep_alive=30,
    ))
    announce(url_of(sock, host))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
