"""The ASGI app of ``envfoundry serve``: an environment over HTTP (leased sessions) and WebSocket.

Routes (OpenAPI description at ``/openapi.json``, pages at ``/docs``):

- ``GET /info``: name, version, description, splits, tools, graders, max turns, answer format,
  content hash; ``GET /tasks?split=&seed=&offset=&limit=``; ``GET /tools``; ``GET /health``.
- ``POST /sessions`` (a task id or a whole task, and a seed) -> the session and the first observation;
  ``POST /sessions/{id}/step``, ``/grade``, ``/reference``, ``/reset``; ``GET /sessions/{id}`` (state);
  ``DELETE /sessions/{id}``. An HTTP session's lease ends ``lease_s`` after its last request.
- ``WS /ws``: one connection is one session, ended with the connection; messages ``reset``, ``step``,
  ``state``, ``grade``, ``reference``, ``end`` (no answer) and ``close`` (see :mod:`envfoundry.remote.wire`).
- ``POST /grade`` (a whole trajectory, by one grader) and ``POST /mutations``: for ``envfoundry check``
  and ``audit`` of a served environment. OpenEnv's ``/metadata`` and ``/schema`` too.

Every refusal is a JSON body ``{"status", "code", "message"}`` with a specific status (401, 404, 409,
410, 422, 503 with ``Retry-After``); the other sessions go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from ..core.env import Environment
from ..hub.identity import TASKS_RULE
from ..remote import wire
from . import catalog
from .bodies import ActionBody, GradeBody, GradeInputBody, MutationsBody, ResetBody, first_error, reset_request
from .config import ServeConfig
from .errors import ApiError, malformed
from .sessions import Session, Sessions


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def _error(e: ApiError) -> Response:
    return _json(e.body(), e.status, e.headers)


# ---------------------------------------------------------------- the token
class _TokenGate:
    """Pure ASGI middleware: every request but ``/health`` carries ``Authorization: Bearer TOKEN``,
    else 401 (a WebSocket is refused before it opens, with the same 401 where the server can say so)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    def _ok(self, scope: dict[str, Any]) -> bool:
        for k, v in scope.get("headers") or []:
            if k == b"authorization":
                scheme, _, given = v.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") == "/health" or self._ok(scope):
            await self.app(scope, receive, send)
            return
        err = ApiError(401, "unauthorized", "this server needs a token: send 'Authorization: Bearer TOKEN' "
                       f"(the client reads it from ${wire.TOKEN_VAR})")
        body = wire.dumps(err.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})


# ---------------------------------------------------------------- where environment code runs
class _Runner:
    """Runs environment code on the event loop while it is quick (a thread hop costs more than a typical
    step), and on the worker threads once operations (a reset, a step, a grading) take longer than
    ``inline_s``: three of the last hundred (one alone may be the machine's hiccup). An environment that
    blocks (I/O, sleeps, heavy grading) then no longer holds up the other sessions."""

    SLOW, WINDOW = 3, 100

    def __init__(self, pool: ThreadPoolExecutor | None, inline_s: float) -> None:
        self.pool, self.inline_s = pool, inline_s
        self.inline = pool is None or inline_s > 0
        self.n = 0
        self.slow: list[int] = []

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.inline:
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.n += 1
                if self.pool is not None and time.perf_counter() - t > self.inline_s:
                    self.slow = [i for i in self.slow if i > self.n - self.WINDOW] + [self.n]
                    if len(self.slow) >= self.SLOW:
                        self.inline = False  # threads from now on
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


# ---------------------------------------------------------------- the app
def make_app(env: Environment, config: ServeConfig) -> Any:
    """The ASGI app serving ``env`` (wrapped in the token check when ``config.token`` is set)."""
    sessions = Sessions(env, max_sessions=config.max_sessions, lease_s=config.lease_s)
    pool = ThreadPoolExecutor(config.threads, thread_name_prefix="envfoundry-env") if config.threads else None
    cache: dict[str, Any] = {}
    runner = _Runner(pool, config.inline_s)

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await runner(fn, *args)

    async def reaper() -> None:
        while True:
            await asyncio.sleep(max(0.05, min(5.0, config.lease_s / 4)))
            sessions.expire_idle()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        task = asyncio.ensure_future(reaper())
        threading.Thread(target=hash_in_background, name="envfoundry-content-hash", daemon=True).start()
        try:
            yield
        finally:
            task.cancel()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"envfoundry: {env.name}", version=env.version, lifespan=lifespan,
                  description=(env.description or f"The {env.name} environment") + " - served by envfoundry "
                  "(leased sessions over HTTP and WebSocket).")
    app.state.sessions = sessions

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> Response:
        return _error(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        return _error(malformed(first_error(e.errors())))

    def hash_in_background() -> None:
        """The content hash makes tasks of every split: on a thread of its own, never in a request."""
        try:
            cache["content_hash"], cache["split_sizes"] = catalog.content_hash(env)
        except Exception as e:  # noqa: BLE001 - the task source's failure shows in /tasks too
            cache["content_hash_error"] = wire.crash_summary(e)

    async def info() -> dict[str, Any]:
        if "info" not in cache:
            cache["info"] = catalog.describe(env, spec=config.spec, max_sessions=config.max_sessions,
                                             lease_s=config.lease_s)
        out = {**cache["info"], "open_sessions": len(sessions), "content_hash": cache.get("content_hash"),
               "content_hash_rule": TASKS_RULE, "split_sizes": cache.get("split_sizes"),
               "env_code_runs": "on the event loop" if runner.inline else "on worker threads"}
        if "content_hash_error" in cache:
            out["content_hash_error"] = cache["content_hash_error"]
        return out

    @app.get("/health", tags=["about"], summary="OpenEnv's health check (no token needed)")
    async def health() -> Response:
        return _json({"status": "healthy"})

    @app.get("/info", tags=["about"], summary="The environment: tools, graders, splits, version, content hash")
    async def get_info() -> Response:
        return _json(await info())

    @app.get("/metadata", tags=["about"], summary="OpenEnv's metadata")
    async def get_metadata() -> Response:
        return _json(catalog.metadata(env))

    @app.get("/schema", tags=["about"], summary="OpenEnv's action, observation and state schemas")
    async def get_schema() -> Response:
        return _json(catalog.SCHEMA)

    @app.get("/tools", tags=["about"], summary="Tool schemas (OpenAI function format) and whether each writes")
    async def get_tools() -> Response:
        return _json((await info())["tools"])

    @app.get("/tasks", tags=["tasks"], summary="A page of a split's tasks (whole, with their ids and metadata)")
    async def get_tasks(split: str | None = None, seed: int = Query(0, ge=0), offset: int = Query(0, ge=0),
                        limit: int = Query(100, ge=1, le=1000)) -> Response:
        return _json(await run(sessions.page, split or sessions.default_split, seed, offset, limit))

    # ------------------------------------------------------------ sessions over HTTP
    async def on_session(sid: str, fn: Callable[[Session], Awaitable[Any]]) -> Any:
        s = sessions.get(sid)
        sessions.claim(s)
        try:
            return await fn(s)
        finally:
            sessions.release(s)

    async def do_reset(s: Session, req: dict[str, Any]) -> dict[str, Any]:
        task = await run(sessions.resolve, req)
        return await run(sessions.reset, s, req, task)

    @app.post("/sessions", status_code=201, tags=["sessions"],
              summary="Open a session and start an episode (503 with Retry-After when the server is full)")
    async def open_session(body: ResetBody | None = None) -> Response:
        body = body or ResetBody()
        s = sessions.open("http")
        sessions.claim(s)
        try:
            out = await do_reset(s, body.model_dump(exclude_none=True))
        except BaseException:
            sessions.end(s.id, "was closed: its first reset failed")
            raise
        finally:
            sessions.release(s)
        return _json({**out, "lease_s": config.lease_s}, 201)

    @app.post("/sessions/{sid}/reset", tags=["sessions"], summary="Start another episode in the session")
    async def reset_session(sid: str, body: ResetBody | None = None) -> Response:
        body = body or ResetBody()
        return _json(await on_session(sid, lambda s: do_reset(s, body.model_dump(exclude_none=True))))

    @app.post("/sessions/{sid}/step", tags=["sessions"],
              summary="Act; the step that ends the episode also returns its grade (outcome, score, world diff)")
    async def step_session(sid: str, body: ActionBody) -> Response:
        action = body.model_dump(exclude_none=True)
        return _json(await on_session(sid, lambda s: run(sessions.step, s, action)))

    @app.post("/sessions/{sid}/grade", tags=["sessions"], summary="Grade the episode (typed outcome, score, diff)")
    async def grade_session(sid: str, body: GradeBody | None = None) -> Response:
        req = (body or GradeBody()).model_dump()
        return _json(await on_session(sid, lambda s: run(sessions.grade, s, req)))

    @app.post("/sessions/{sid}/reference", tags=["sessions"], summary="The reference solution's next action")
    async def reference_session(sid: str) -> Response:
        return _json(await on_session(sid, lambda s: run(sessions.reference, s)))

    @app.get("/sessions/{sid}", tags=["sessions"], summary="The session's state (episode, turns, messages)")
    async def state_session(sid: str) -> Response:
        async def state(s: Session) -> dict[str, Any]:
            return sessions.state(s)

        return _json(await on_session(sid, state))

    @app.delete("/sessions/{sid}", status_code=204, tags=["sessions"], summary="Close the session, freeing its world")
    async def close_session(sid: str) -> Response:
        s = sessions.get(sid)
        if s.kind != "http":
            raise ApiError(409, "websocket_session", f"session {sid!r} belongs to a WebSocket; close the connection")
        sessions.end(sid, "was closed by its client")
        return Response(status_code=204)

    @app.get("/worlds/{key}", tags=["checks"], summary="A base world (tables), as named by a reset with world=true")
    async def get_world(key: str) -> Response:
        return _json(await run(sessions.base, key))

    @app.post("/grade", tags=["checks"], summary="Grade a whole trajectory, by one grader or all (for check)")
    async def grade_input(body: GradeInputBody) -> Response:
        return _json(await run(sessions.grade_input, body.model_dump()))

    @app.post("/mutations", tags=["checks"], summary="The environment's mutations of a solution (for audit)")
    async def mutations(body: MutationsBody) -> Response:
        return _json(await run(sessions.mutations, body.model_dump()))

    # ------------------------------------------------------------ WebSocket: one connection, one session
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        try:
            s = sessions.open("ws")
        except ApiError as e:
            if "websocket.http.response" in websocket.scope.get("extensions", {}):
                await websocket.send_denial_response(_error(e))
            else:
                await websocket.accept()
                await websocket.send_text(wire.dumps({"type": "error", "data": e.body()}))
                await websocket.close(1013)
            return
        try:
            await websocket.accept()
            while True:
                raw = await websocket.receive()
                if raw["type"] == "websocket.disconnect":
                    break
                text = raw.get("text")
                if text is None:
                    text = (raw.get("bytes") or b"").decode("utf-8", "replace")
                reply = await _ws_message(s, text)
                if reply is _CLOSE:
                    await websocket.close(1000)
                    break
                if reply is not None:
                    await websocket.send_text(reply)
        except WebSocketDisconnect:
            pass
        finally:
            sessions.end(s.id, "ended: its WebSocket closed")

    async def _ws_message(s: Session, text: str) -> Any:
        try:
            msg = wire.loads(text)
            if not isinstance(msg, dict):
                raise malformed(f"a message must be a JSON object with a type, got {type(msg).__name__}")
            kind, data = msg.get("type"), msg.get("data")
            data = {} if data is None else data
            if kind == "step":
                out = await run(sessions.step, s, data)
            elif kind == "reset":
                if not isinstance(data, dict):
                    raise malformed("reset data must be a JSON object")
                req = reset_request(data)
                out = await do_reset(s, req)
            elif kind == "grade":
                out = await run(sessions.grade, s, data if isinstance(data, dict) else {})
                return wire.dumps({"type": "grade", "data": out})
            elif kind == "reference":
                return wire.dumps({"type": "reference", "data": await run(sessions.reference, s)})
            elif kind == "world_base":
                key = data.get("key") if isinstance(data, dict) else None
                return wire.dumps({"type": "world_base", "data": await run(sessions.base, str(key))})
            elif kind == "state":
                return wire.dumps({"type": "state", "data": sessions.state(s)})
            elif kind == "end":
                sessions.end_episode(s)
                return None
            elif kind == "close":
                return _CLOSE
            else:
                raise ApiError(400, "unknown_type", f"unknown message type {kind!r} (types: reset, step, state, "
                               "grade, reference, world_base, end, close)")
            return wire.dumps({"type": "observation", "data": out})
        except ValueError as e:  # not JSON
            return wire.dumps({"type": "error", "data": malformed(f"invalid JSON: {e}").body()})
        except ApiError as e:
            return wire.dumps({"type": "error", "data": e.body()})

    if config.token:
        return _TokenGate(app, config.token)
    return app


_CLOSE = object()
