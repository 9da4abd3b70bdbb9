"""The machinery behind ``shop-browser``: one private event loop that owns the web server and the browser.

Design (one design for the engine's async path and for the synchronous paths of check and audit):
every Playwright object and every request the web application handles live on one event loop, run
by a daemon thread that an environment starts on its first episode. The environment's methods never
touch them directly; they submit coroutines to that loop. The async methods the engine awaits
(``areset``, ``astep``, ``aclose``) await the result through :func:`asyncio.wrap_future`, so the
engine's loop never blocks and many episodes overlap on the browser; the sync methods (``reset``,
``step``) block on the same future. Nothing is bound to the caller's loop, so ``check`` (which calls
``asyncio.run`` many times, and ``ep.step`` from inside a running loop) and ``audit`` work as the
engine does. World writes happen only in the web application's request handlers on that loop, and
an action returns only once its page has loaded, so a finished episode's world is quiet when it is
graded in the caller's thread.

One browser process and one uvicorn server serve every episode of an environment; each episode has
its own browser context (cookies, history) and its own site in the application (its forked world).
They stop when the environment is garbage-collected or the interpreter exits (``atexit``): the
browser closes, Playwright's driver stops, the server shuts down. A browser that died is launched
again on the next episode; the episodes that were using it end as ``env_error``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib.util
import os
import socket
import threading
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from envfoundry import UsageError

from .web_app import COOKIE, ShopWebApp, Site

T = TypeVar("T")
SYSTEM_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_VAR = "ENVFOUNDRY_CHROMIUM"
INSTALL_EXTRA = 'pip install "envfoundry[browser]"'
NO_BROWSER = ("shop-browser needs Chromium: install the system's package (`apt-get install chromium`, works offline) "
              "or Playwright's own build (`playwright install chromium`), or set ENVFOUNDRY_CHROMIUM to a Chromium "
              "executable")
#: Chromium switches: no back/forward cache (back() always asks the server again), no background traffic;
#: the marker names this process, so a leaked browser can be told from others
_ARGS = ("--disable-features=BackForwardCache,Translate,OptimizationHints,MediaRouter",
         "--disable-background-networking", "--disable-dev-shm-usage", "--no-first-run", "--mute-audio")


def require_packages() -> None:
    """A UsageError naming the install command when a Python package the browser mode needs is missing."""
    for mod in ("playwright", "starlette", "uvicorn"):
        if importlib.util.find_spec(mod) is None:
            raise UsageError(f"shop-browser needs the Python package {mod!r}: {INSTALL_EXTRA}")


def _playwright_chromium_installed() -> bool:
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(Path.home() / ".cache" / "ms-playwright")
    try:
        return any(p.name.startswith("chromium") for p in Path(root).iterdir())
    except OSError:
        return False


def chromium_executable() -> str | None:
    """The Chromium to launch: ``$ENVFOUNDRY_CHROMIUM``, else ``/usr/bin/chromium``, else None (Playwright's
    own download); a UsageError naming the install commands when there is none."""
    chosen = os.environ.get(CHROMIUM_VAR, "").strip()
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise UsageError(f"{CHROMIUM_VAR}={chosen!r} is not an executable file. {NO_BROWSER}")
        return chosen
    if os.access(SYSTEM_CHROMIUM, os.X_OK):
        return SYSTEM_CHROMIUM
    if _playwright_chromium_installed():
        return None
    raise UsageError(NO_BROWSER)


class BrowserGone(RuntimeError):
    """The browser closed or the page crashed during an episode: an environment failure (env_error)."""


@dataclass(eq=False)
class PageHandle:
    """One episode's browser context and page, and what the last observation showed."""

    token: str
    context: Any
    page: Any
    status: int | None = None  # the HTTP status of the page's last document response
    refs: dict[str, str] = field(default_factory=dict)  # element id -> 'role "name"' in the last observation
    crashed: bool = False
    closed: bool = False
    screenshot: str | None = None  # base64 PNG of the last observation (screenshots=true)

    def on_response(self, resp: Any) -> None:
        with contextlib.suppress(Exception):
            if resp.request.is_navigation_request() and resp.frame == self.page.main_frame:
                self.status = resp.status


_LIVE: weakref.WeakSet[BrowserRuntime] = weakref.WeakSet()


def _close_all() -> None:
    for rt in list(_LIVE):
        rt.close()


atexit.register(_close_all)


class BrowserRuntime:
    """The private loop thread with the web application, its server and the browser (see the module doc)."""

    def __init__(self, *, executable: str | None, slow_s: float = 1.0, action_timeout_s: float = 10.0,
                 parallel: int | None = None) -> None:
        self.executable = executable
        self.webapp = ShopWebApp(slow_s=slow_s)
        self.action_timeout_ms = action_timeout_s * 1000
        self.nav_timeout_ms = (slow_s + 20.0) * 1000
        #: browser actions in flight at once: more episodes than this wait their turn instead of
        #: slowing every page down past its timeouts (a loaded machine, 32 rollouts in flight)
        self.parallel = parallel or min(16, 2 * (os.cpu_count() or 2))
        self._slots: asyncio.Semaphore | None = None
        self.origin: str | None = None  # http://127.0.0.1:PORT once the server listens
        self.browser: Any = None
        self.handles: set[PageHandle] = set()
        self.launches = 0
        self.closed = False
        self._pw: Any = None
        self._server: Any = None
        self._server_task: asyncio.Task[Any] | None = None
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ the thread
    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self.closed:
                raise RuntimeError("shop-browser: the browser runtime was closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="envfoundry-shop-browser", daemon=True)
                t.start()
                self._loop, self._thread = loop, t
                _LIVE.add(self)
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the private loop (started on first use)."""
        try:
            loop = self._started_loop()
        except RuntimeError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for it (the synchronous paths)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("shop-browser: a synchronous call from the browser's own thread would deadlock")
        return self.submit(coro).result()

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the private loop, from any other event loop (the engine's)."""
        return await asyncio.wrap_future(self.submit(coro))

    # ------------------------------------------------------------------ on the private loop
    def slot(self) -> asyncio.Semaphore:
        """Hold one while talking to the browser (see ``parallel``)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.parallel)
        return self._slots

    async def ensure(self) -> Any:
        """The web server and a connected browser, started (or the browser launched again) when needed."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._server is None:
                await self._start_server()
            if self.browser is None or not self.browser.is_connected():
                await self._launch()
        return self.browser

    async def _start_server(self) -> None:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        config = uvicorn.Config(self.webapp.app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            server.should_exit = True
            exc = task.exception() if task.done() else None
            raise RuntimeError(f"shop-browser: the web server did not start ({exc})")
        self._server, self._server_task = server, task
        self.origin = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def _launch(self) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        if self._pw is None:
            self._pw = await async_playwright().start()
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await self.browser.close()
        args = [*_ARGS, f"--envfoundry-runtime={os.getpid()}-{id(self):x}"]
        try:
            self.browser = await self._pw.chromium.launch(executable_path=self.executable, headless=True, args=args)
        except PlaywrightError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"shop-browser could not launch Chromium ({first}). {NO_BROWSER}") from None
        self.launches += 1

    async def open_page(self, site: Site) -> PageHandle:
        """A new browser context with its own session cookie for ``site``, and a blank page in it."""
        browser = await self.ensure()
        token = self.webapp.open(site)
        try:
            async with self.slot():
                ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
                ctx.set_default_timeout(self.action_timeout_ms)
                ctx.set_default_navigation_timeout(self.nav_timeout_ms)
                await ctx.add_cookies([{"name": COOKIE, "value": token, "url": self.origin, "httpOnly": True,
                                        "sameSite": "Lax"}])
                page = await ctx.new_page()
        except BaseException:
            self.webapp.close(token)
            raise
        h = PageHandle(token, ctx, page)
        page.on("crash", lambda _page: setattr(h, "crashed", True))
        page.on("response", h.on_response)
        self.handles.add(h)
        return h

    def gone(self, h: PageHandle) -> str | None:
        """Why the episode's page can no longer be used (None while it can)."""
        if h.crashed:
            return "the page crashed"
        if self.browser is None or not self.browser.is_connected():
            return "the browser closed"
        if h.page.is_closed():
            return "the page was closed"
        return None

    async def release(self, h: PageHandle) -> None:
        """Close an episode's context and forget its site."""
        if h.closed:
            return
        h.closed = True
        self.webapp.close(h.token)
        self.handles.discard(h)
        with contextlib.suppress(Exception):
            await h.context.close()

    def release_soon(self, h: PageHandle) -> None:
        """From any thread (an episode that was never closed, garbage-collected): release it later."""
        loop = self._loop
        if h.closed or self.closed or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.release(h), loop)

    async def _shutdown(self) -> None:
        for h in list(self.handles):
            await self.release(h)
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await self.browser.close()
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server_task, 5)

    def close(self, timeout_s: float = 20.0) -> None:
        """Stop the browser, the driver and the server, then the thread (idempotent)."""
        with self._guard:
            if self.closed:
                return
            self.closed = True
            loop, thread = self._loop, self._thread
        _LIVE.discard(self)
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:  # from a finalizer on the loop itself: do not wait on it
            loop.create_task(self._shutdown()).add_done_callback(lambda _t: loop.stop())
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
