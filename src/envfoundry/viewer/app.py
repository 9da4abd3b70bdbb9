"""The viewer's web app (Starlette on uvicorn): routes, the read-only and loopback rules, and
:func:`serve`.

Every response carries a Content-Security-Policy that allows no script and no framing; only GET
and HEAD are answered; while the viewer listens on a loopback address, a request whose ``Host``
is not a loopback name is refused (a web page cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import EnvfoundryError, UsageError
from .cache import IndexCache, cache_dir
from .catalog import Catalog, discover
from .html import CSS, page, tag
from .roots import Outside, Roots

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
#: files under the served folders the viewer hands out as they are, by suffix
FILE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8",
              ".json": "text/plain; charset=utf-8", ".jsonl": "text/plain; charset=utf-8",
              ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8"}
#: a served HTML file (a scorecard) runs in a sandbox: its own origin, no script, no requests
FILE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
DEFAULT_PORT = 8765


def _starlette() -> Any:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError('`envfoundry view` needs the web stack: pip install "envfoundry[serve]"') from None
    return starlette


def is_loopback(host: str) -> bool:
    h = host.strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class _Guard:
    """ASGI middleware: GET and HEAD only, loopback ``Host`` names only (unless remote access was
    asked for), and the security headers on every response."""

    def __init__(self, app: Any, *, check_host: bool) -> None:
        self.app = app
        self.check_host = check_host

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.responses import PlainTextResponse

        headers = dict(scope.get("headers") or [])
        if scope["method"] not in ("GET", "HEAD"):
            return await PlainTextResponse("the viewer is read-only", 405, headers={"Allow": "GET, HEAD"})(
                scope, receive, send)
        if self.check_host:
            host = headers.get(b"host", b"").decode("latin-1")
            name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(
                ":") == 1 else host
            if not is_loopback(name):
                return await PlainTextResponse("this viewer answers only to a loopback host name", 400)(
                    scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                hs = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                own = dict(message.get("headers", []))
                hs += [(b"content-security-policy", own.get(b"content-security-policy", CSP.encode())),
                       (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                       (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]
                message = {**message, "headers": hs}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(paths: Sequence[str | Path], *, check_host: bool = True, cache: Path | None | str = "default",
               prewarm: bool = True) -> Any:
    """The viewer over ``paths`` as an ASGI app. ``cache``: the index folder (default
    :func:`~envfoundry.viewer.cache.cache_dir`; None keeps indexes in memory only)."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, Response
    from starlette.routing import Route

    from .pages_quality import audit_page, calibration_page, check_page, quality_page
    from .pages_runs import compare_page, run_page, runs_page
    from .pages_traj import trajectory_page

    roots = Roots(paths)
    folder = cache_dir() if cache == "default" else (Path(cache) if cache is not None else None)
    cat = Catalog(roots, IndexCache(folder))

    def html(fn: Callable[..., Any]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                out = fn(request)
                text, status = out if isinstance(out, tuple) else (out, 200)
            except Outside:
                text, status = page("Not found", tag("p", "nothing here inside the served folders", class_="note")), 404
            except (EnvfoundryError, ValueError, OSError) as e:
                text, status = page("Cannot show this", tag("p", str(e) or type(e).__name__, class_="note")), 422
            except Exception as e:  # noqa: BLE001 - a file no writer of ours produced: say so, keep serving
                text, status = page("Cannot show this", tag("p", f"this page failed on what the file holds "
                                                             f"({type(e).__name__}: {e})", class_="note")), 500
            return HTMLResponse(text.encode("utf-8", "backslashreplace"), status)

        return endpoint

    def q(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    def ref(request: Request) -> str:
        return str(request.path_params["ref"])

    def compare(request: Request) -> Any:
        runs = request.query_params.getlist("run") + [x for x in (request.query_params.get("a"),
                                                                   request.query_params.get("b")) if x]
        return compare_page(cat, runs)

    def file(request: Request) -> Response:
        try:
            p = roots.resolve(ref(request))
        except Outside:
            p = None
        kind = FILE_TYPES.get(p.suffix.lower()) if p is not None and p.is_file() else None
        if p is None or kind is None:
            return HTMLResponse(page("Not found", tag("p", "nothing here inside the served folders",
                                                      class_="note")), 404)
        headers = {"content-security-policy": FILE_CSP} if kind.startswith(("text/html", "image/svg")) else {}
        return FileResponse(p, media_type=kind, headers=headers)

    def css(request: Request) -> Response:
        return Response(CSS, media_type="text/css")

    routes = [
        Route("/", html(lambda r: runs_page(cat, q(r)))),
        Route("/run/{ref:path}", html(lambda r: run_page(cat, ref(r), q(r)))),
        Route("/traj/{ref:path}", html(lambda r: trajectory_page(cat, ref(r), q(r)))),
        Route("/compare", html(compare)),
        Route("/quality", html(lambda r: quality_page(cat))),
        Route("/audit/{ref:path}", html(lambda r: audit_page(cat, ref(r)))),
        Route("/calibration/{ref:path}", html(lambda r: calibration_page(cat, ref(r)))),
        Route("/check/{ref:path}", html(lambda r: check_page(cat, ref(r)))),
        Route("/file/{ref:path}", file),
        Route("/static/view.css", css),
    ]
    app = Starlette(routes=routes)
    app.state.catalog = cat
    if prewarm:
        threading.Thread(target=_prewarm, args=(cat,), daemon=True, name="envfoundry view index").start()
    return _Guard(app, check_host=check_host)


def _prewarm(cat: Catalog) -> None:
    """Index the served runs one after another in the background, so their pages open at once."""
    for run in discover(cat.roots).runs:
        try:
            cat.index(run, wait_s=None)
        except Exception:  # noqa: BLE001 - the run's own page shows what is wrong with it
            continue


def check_address(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise UsageError(f"--host {host} is not a loopback address: the viewer would show your runs to anyone who "
                         "can reach this machine; add --allow-remote to do that on purpose")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a port in use or an address this machine lacks is a UsageError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use; choose another --port (0 picks a free one)") from None
        if e.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        raise
    sock.listen(128)
    return sock


def serve(paths: Sequence[str | Path], *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          allow_remote: bool = False, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the viewer over ``paths`` until interrupted. ``on_ready(url)`` is called once it listens."""
    check_address(host, allow_remote)
    app = create_app(paths, check_host=is_loopback(host))
    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{shown}:{bound}/")
    server.run(sockets=[sock])
