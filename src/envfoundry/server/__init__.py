"""``envfoundry serve``: an environment over HTTP and WebSocket, for trainers on other machines.

The server (this package) needs ``pip install "envfoundry[serve]"`` (FastAPI on uvicorn); its
client, :func:`envfoundry.connect` in :mod:`envfoundry.remote`, needs only aiohttp. Import
:mod:`.app` for the ASGI app itself.
"""

from .config import ServeConfig, is_loopback, token_from_env
from .run import serve

__all__ = ["ServeConfig", "is_loopback", "serve", "token_from_env"]
