"""A client's connections to one server, driven by a private event loop on its own thread.

Everything the client sends goes through this loop, so the environment works from any caller: the
engine's event loop (``await``), plain synchronous code (``envfoundry check``'s probes), several
``asyncio.run`` calls in a row, or threads. Episodes run over WebSocket connections (one
connection = one server session) kept in a small pool between episodes; the rest is HTTP.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from . import wire
from .errors import RemoteError, RemoteRefused, RemoteUnavailable, refusal

T = TypeVar("T")

#: idle pooled connections are closed after this long (each holds one of the server's sessions)
IDLE_KEEP_S = 10.0
#: at most this many idle connections are kept
POOL_MAX = 256


class _Loop:
    """An event loop running on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="envfoundry-remote", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` there and wait for it (from any thread but the loop's own)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a synchronous remote call from the client's own event loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` there and await it from another event loop (cancellation is passed on)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def post(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` there without waiting (for clean-up)."""
        if self.loop.is_closed():
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()


class Transport:
    """HTTP requests and pooled WebSocket connections to the server at ``url``."""

    def __init__(self, url: str, token: str | None, *, busy_wait_s: float = 600.0, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url[4:] + "/ws" if self.url.startswith("http") else self.url + "/ws"
        self.headers = {wire.AUTH_HEADER: f"Bearer {token}"} if token else {}
        self.busy_wait_s, self.timeout_s = busy_wait_s, timeout_s
        self.lp = _Loop()
        self._session: aiohttp.ClientSession | None = None
        self._idle: list[tuple[float, aiohttp.ClientWebSocketResponse]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        _LIVE.add(self)

    # ------------------------------------------------------------------ plumbing (on the loop)
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers, connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s))
            self._sweeper = asyncio.ensure_future(self._sweep())
        return self._session

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_KEEP_S / 2)
            now = time.monotonic()
            old = [ws for t, ws in self._idle if now - t > IDLE_KEEP_S]
            self._idle = [(t, ws) for t, ws in self._idle if now - t <= IDLE_KEEP_S]
            for ws in old:
                await _quiet_close(ws)

    def _gone(self, e: BaseException) -> RemoteUnavailable:
        return RemoteUnavailable(f"the environment server at {self.url} is unreachable or went away "
                                 f"({type(e).__name__}: {e})".replace(": )", ")"))

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One request (every request this client makes over HTTP is safe to repeat: reads, and grading
        or mutating a trajectory sent whole), asked once more when a kept-alive connection was closed."""
        try:
            return await self._request(method, path, body, params)
        except RemoteUnavailable:
            await asyncio.sleep(0.05)
            return await self._request(method, path, body, params)

    async def _request(self, method: str, path: str, body: Any, params: dict[str, Any] | None) -> Any:
        data = None if body is None else wire.dumps(body)
        try:
            async with self._http().request(method, self.url + path, data=data, params=params,
                                            headers={"Content-Type": "application/json"} if data else None) as r:
                text = await r.text()
                if r.status >= 400:
                    try:
                        data = wire.loads(text)
                    except ValueError:
                        data = {"message": text[:300]}
                    if not isinstance(data, dict):
                        data = {"message": str(data)[:300]}
                    data.setdefault("status", r.status)
                    raise refusal(data, f"{method} {path}")
                try:
                    return wire.loads(text) if text else None
                except ValueError:
                    raise RemoteError(f"{method} {path}: the server at {self.url} answered {r.status} with a body "
                                      f"that is not JSON ({text[:60]!r})", status=r.status) from None
        except RemoteError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            raise self._gone(e) from None

    async def acquire(self) -> tuple[aiohttp.ClientWebSocketResponse, bool]:
        """A connection (a server session): an idle one from the pool (``True``), else a new one; a full
        server (503) is asked again after its ``Retry-After`` until ``busy_wait_s`` has passed."""
        while self._idle:
            _, ws = self._idle.pop()
            if not ws.closed:
                return ws, True
        deadline = time.monotonic() + self.busy_wait_s
        while True:
            try:
                ws = await self._http().ws_connect(self.ws_url, heartbeat=20.0, autoping=True, compress=0,
                                                   max_msg_size=0)
                return ws, False
            except aiohttp.WSServerHandshakeError as e:
                if e.status == 503 and time.monotonic() < deadline:
                    after = _retry_after(e.headers)
                    await asyncio.sleep(min(after, max(0.0, deadline - time.monotonic())) * random.uniform(1, 1.5))
                    continue
                if e.status == 401:
                    raise RemoteRefused(f"the environment server at {self.url} refused the connection: it needs a "
                                        f"token (set ${wire.TOKEN_VAR}, or pass token=)", status=401,
                                        code="unauthorized") from None
                if e.status == 503:
                    raise RemoteUnavailable(f"the environment server at {self.url} stayed full for "
                                            f"{self.busy_wait_s:g}s (503)", status=503, code="server_full") from None
                raise RemoteRefused(f"the environment server at {self.url} refused a WebSocket ({e.status} "
                                    f"{e.message})", status=e.status) from None
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise self._gone(e) from None

    async def release(self, ws: aiohttp.ClientWebSocketResponse, *, end: bool = True) -> None:
        """Put a connection back in the pool; ``end`` first frees its episode (and world) on the server
        (a message with no answer, sent before anyone else can take the connection)."""
        if ws.closed or self._closed:
            return
        if end:
            try:
                await ws.send_str('{"type":"end"}')
            except Exception:  # noqa: BLE001 - a dead connection is dropped
                await _quiet_close(ws)
                return
        if len(self._idle) < POOL_MAX:
            self._idle.append((time.monotonic(), ws))
        else:
            await _quiet_close(ws)

    async def discard(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await _quiet_close(ws)

    async def call(self, ws: aiohttp.ClientWebSocketResponse, msg: dict[str, Any], where: str) -> dict[str, Any]:
        """Send one message and read its answer (the ``data`` of an answer; an error frame is raised)."""
        try:
            await ws.send_str(wire.dumps(msg))
            m = await ws.receive()
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError) as e:
            raise self._gone(e) from None
        if m.type is not aiohttp.WSMsgType.TEXT:
            why = f"its connection closed ({ws.close_code})" if m.type in _CLOSED else f"it sent {m.type.name}"
            raise RemoteUnavailable(f"the environment server at {self.url} went away during {where}: {why}")
        try:
            d = wire.loads(m.data)
        except ValueError as e:
            raise RemoteUnavailable(f"the environment server at {self.url} sent invalid JSON ({e})") from None
        if d.get("type") == "error":
            raise refusal(d.get("data") or {}, where)
        return d.get("data") or {}

    # ------------------------------------------------------------------ closing
    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, ws in idle:
            await _quiet_close(ws)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close(self) -> None:
        """Close every connection and stop the loop (idempotent)."""
        if self.lp.loop.is_closed():
            return
        if threading.current_thread() is not self.lp.thread:
            try:
                self.lp.run(self.aclose(), timeout=5)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self.lp.loop.call_soon_threadsafe(self.lp.loop.stop)
            self.lp.thread.join(5)
            if not self.lp.loop.is_running():
                self.lp.loop.close()
        _LIVE.discard(self)


_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


async def _quiet_close(ws: aiohttp.ClientWebSocketResponse) -> None:
    try:
        await asyncio.wait_for(ws.close(), 2)
    except Exception:  # noqa: BLE001
        pass


def _retry_after(headers: Any) -> float:
    try:
        return max(0.05, float((headers or {}).get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


_LIVE: weakref.WeakSet[Transport] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Close clients still open at exit (no 'unclosed session' noise; the server frees their sessions)."""
    for t in list(_LIVE):
        t.close()
