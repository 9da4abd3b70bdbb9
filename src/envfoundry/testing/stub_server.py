"""An OpenAI-compatible stub model server with scripted faults, for tests and benchmarks.

``POST /v1/chat/completions`` answers at once with a fixed or computed reply and a plausible
``usage``; ``GET /v1/models`` lists the one model. A *fault* can be chosen for every request, for
the first requests only (a sequence), or per request by a function, so that a test can show both
a retry that succeeds and a retry budget that runs out::

    async with StubServer(["http_503", "http_503"]) as srv:   # two failures, then normal replies
        policy = OpenAIPolicy(model="stub", base_url=srv.base_url)

    with StubServer("http_500").run_in_thread() as base_url:  # for sync code and subprocesses
        ...

Modes (see :data:`MODES`):

``ok``              a normal completion
``refuse``          the connection is reset without any response
``timeout``         the reply never comes (the handler waits ``hang_s``)
``http_429``        ``429 Too Many Requests`` with ``Retry-After: <retry_after>``
``http_NNN``        that status with an OpenAI-style error body (``http_400``, ``http_500``,
                    ``http_503``, ...); a 400 mentions the offending field
``malformed_json``  ``200`` with a body that is not JSON
``truncated_body``  ``200`` whose ``Content-Length`` promises more bytes than are sent
``no_choices``      ``200`` with ``{"choices": []}``
``no_message``      ``200`` with a choice that has no ``message``

Hostile replies (:data:`HOSTILE_MODES`): a ``200`` whose message is valid JSON but data no client
should trust, as a buggy or adversarial model writes it; each calls the first tool the request
offers (``search`` when it offers none):

``lone_surrogate``  content and tool-call arguments holding lone surrogates (``\\ud800``, valid
                    JSON, not valid Unicode), in the body itself and inside the arguments' text
``nul_bytes``       NUL and other control characters in the content, the tool name and arguments
``huge_arguments``  a 10 MB argument string (``huge_bytes``)
``deep_arguments``  arguments nested ``deep_levels`` (100,000) levels deep, as JSON text
``non_object_arguments``  arguments that are a JSON array, not an object (and not a string)

:data:`HOSTILE_SEQUENCE` gives each in turn, e.g. ``StubServer(lambda i, body: ...)``.

For a "connection refused" test use :func:`unused_port`: nothing listens there.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiohttp import web

#: the fault modes understood by :class:`StubServer` (plus any ``http_NNN``)
HOSTILE_MODES = ("lone_surrogate", "nul_bytes", "huge_arguments", "deep_arguments", "non_object_arguments")
MODES = (
    "ok", "refuse", "timeout", "http_429", "http_400", "http_500", "http_503",
    "malformed_json", "truncated_body", "no_choices", "no_message", *HOSTILE_MODES,
)
#: the hostile replies in the order a fault-injecting test returns them
HOSTILE_SEQUENCE = HOSTILE_MODES
_HTTP = re.compile(r"http_(\d{3})")

#: ``reply(request_json)``: the assistant's text, or a whole OpenAI message dict (for tool calls)
ReplyFn = Callable[[dict[str, Any]], "str | dict[str, Any]"]
#: ``mode(request_number, request_json)``: the mode of that request (numbers start at 0)
ModeFn = Callable[[int, dict[str, Any]], str]


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tokens(text: str) -> int:
    return len(text) // 4 + 1 if text else 0


def _message_dict(reply: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}
    msg = {"role": "assistant", "content": None, **reply}
    calls = []
    for i, c in enumerate(msg.get("tool_calls") or []):
        fn = dict(c.get("function") or c)
        args = fn.get("arguments", {})
        if not (isinstance(args, str) or c.get("raw_arguments")):
            args = json.dumps(args)
        fn = {"name": fn.get("name", ""), "arguments": args}
        calls.append({"id": c.get("id") or f"call_stub_{i}", "type": "function", "function": fn})
    if calls:
        msg["tool_calls"] = calls
    else:
        msg.pop("tool_calls", None)
    return msg


class StubServer:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1`` (a free port).

    Args:
        mode: one mode for every request; a sequence (request ``i`` gets ``mode[i]``, later
            requests get ``then``); or ``fn(i, request_json) -> mode``.
        reply: the assistant's text, or ``fn(request_json) -> text | message dict``.
        then: the mode after a sequence runs out (default ``ok``).
        retry_after: the ``Retry-After`` seconds sent with 429 responses.
        hang_s: how long a ``timeout`` request waits before answering anyway.
        delay_s: latency added to every normal reply.
        reject_tools: answer ``400 ... does not support tools`` to any request with ``tools``
            (a server without native function calling).
        keep_requests: keep every request body in :attr:`requests` (turn off for benchmarks).
        model: the model id reported by ``/v1/models`` and in replies.
        huge_bytes, deep_levels: the size of ``huge_arguments`` and the depth of ``deep_arguments``.
        echo_key: error bodies repeat the request's ``Authorization`` header (as some proxies do),
            to show that a client never stores or prints its key.

    Attributes (readable while it runs and after): ``n_requests`` (chat requests received),
    ``requests`` (their JSON bodies, or None where not JSON), ``headers`` (their headers),
    ``request_times`` (``time.monotonic()`` on arrival), ``served`` (a Counter of modes used),
    ``disconnects`` (requests whose client went away before the reply) and ``max_in_flight``
    (the most chat requests it was handling at one time).
    """

    def __init__(
        self,
        mode: str | Sequence[str] | ModeFn = "ok",
        *,
        reply: str | ReplyFn = "<answer>4</answer>",
        then: str = "ok",
        retry_after: float = 1.0,
        hang_s: float = 3600.0,
        delay_s: float = 0.0,
        reject_tools: bool = False,
        keep_requests: bool = True,
        model: str = "stub-model",
        huge_bytes: int = 10 * 1024 * 1024,
        deep_levels: int = 100_000,
        echo_key: bool = False,
    ) -> None:
        for m in [then] + ([mode] if isinstance(mode, str) else
                          list(mode) if not callable(mode) else []):
            self._check_mode(m)
        self.mode = mode
        self.reply = reply
        self.then = then
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.delay_s = delay_s
        self.reject_tools = reject_tools
        self.keep_requests = keep_requests
        self.model = model
        self.huge_bytes = huge_bytes
        self.deep_levels = deep_levels
        self.echo_key = echo_key
        self.n_requests = 0
        self.requests: list[dict[str, Any] | None] = []
        self.headers: list[dict[str, str]] = []
        self.request_times: list[float] = []
        self.served: Counter[str] = Counter()
        self.disconnects = 0
        self.in_flight = self.max_in_flight = 0
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("StubServer is not running; use `async with StubServer(...)`")
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a handler is cancelled when its client goes away, which is how
        # ``disconnects`` is counted and how a hanging ``timeout`` request ends.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.25
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StubServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextmanager
    def run_in_thread(self) -> Iterator[str]:
        """Serve from a background thread with its own event loop; yields ``base_url``."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # noqa: BLE001 - reported to the caller below
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=serve, name="envfoundry-stub-server", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        try:
            yield self.base_url
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    # ------------------------------------------------------------ behaviour
    @staticmethod
    def _check_mode(m: str) -> None:
        if m not in MODES and not _HTTP.fullmatch(m):
            raise ValueError(f"unknown stub mode {m!r} (modes: {', '.join(MODES)}, http_NNN)")

    def _mode_for(self, i: int, body: dict[str, Any] | None) -> str:
        mode = self.mode
        if isinstance(mode, str):
            return mode
        if callable(mode):
            m = mode(i, body or {})
            self._check_mode(m)
            return m
        return mode[i] if i < len(mode) else self.then

    def _completion(self, body: dict[str, Any], reply: str | dict[str, Any] | None = None) -> bytes:
        if reply is None:
            reply = self.reply(body) if callable(self.reply) else self.reply
        msg = _message_dict(reply)
        prompt = sum(_tokens(str(m.get("content") or "")) + 4 for m in body.get("messages", []))
        completion = _tokens(str(msg.get("content") or "")) + sum(
            _tokens(str(c["function"]["arguments"])) + 4 for c in msg.get("tool_calls", [])
        )
        return json.dumps({
            "id": f"chatcmpl-stub-{self.n_requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{
                "index": 0,
                "message": msg,
                "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
            }],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }).encode()

    def _hostile(self, mode: str, body: dict[str, Any]) -> dict[str, Any]:
        """The message of a hostile reply (see the module documentation)."""
        tools = body.get("tools") or []
        first = tools[0].get("function", {}) if tools and isinstance(tools[0], dict) else {}
        name = first.get("name") or "search"
        call: dict[str, Any] = {"id": f"call_{mode}", "function": {"name": name}}
        content = f"({mode})"
        if mode == "lone_surrogate":
            content = "a lone \ud800 surrogate and a lone \udfff one"
            call["function"]["arguments"] = '{"query": "\\ud800 \\udc00x"}'
        elif mode == "nul_bytes":
            content = "nul \x00 bell \x07 escape \x1b[31m end"
            call["function"]["name"] = name + "\x00"
            call["function"]["arguments"] = json.dumps({"query": "a\x00b\x1b"})
        elif mode == "huge_arguments":
            call["function"]["arguments"] = json.dumps({"query": "x" * self.huge_bytes})
        elif mode == "deep_arguments":
            n = self.deep_levels
            call["function"]["arguments"] = '{"query": ' + "[" * n + "]" * n + "}"
        else:  # non_object_arguments: a JSON array where a JSON text of an object belongs
            call["function"]["arguments"] = ["not", "an", {"object": True}]
            call["raw_arguments"] = True
        return {"content": content, "tool_calls": [call]}

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "envfoundry"}
        ]})

    def _error(self, status: int, message: str, type_: str, request: web.Request | None = None,
               **headers: str) -> web.Response:
        if self.echo_key and request is not None:
            message += f" (request had Authorization: {request.headers.get('Authorization', '(none)')})"
        return web.json_response(
            {"error": {"message": message, "type": type_, "code": status}},
            status=status, headers=headers,
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        i = self.n_requests
        self.n_requests += 1
        self.request_times.append(time.monotonic())
        raw = await request.read()
        try:
            body: dict[str, Any] | None = json.loads(raw)
        except ValueError:
            body = None
        if self.keep_requests:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        mode = self._mode_for(i, body)
        self.served[mode] += 1
        if mode == "refuse":
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:  # RST instead of FIN: "connection reset by peer"
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            raise asyncio.CancelledError  # nothing is sent; aiohttp drops the request quietly
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(request, mode, body)
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        finally:
            self.in_flight -= 1

    async def _respond(
        self, request: web.Request, mode: str, body: dict[str, Any] | None
    ) -> web.StreamResponse:
        if mode == "ok":
            if body is None:
                return self._error(400, "request body is not valid JSON", "invalid_request_error")
            if self.reject_tools and body.get("tools"):
                return self._error(400, f"model {self.model!r} does not support tools",
                                   "invalid_request_error")
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return web.Response(body=self._completion(body), content_type="application/json")
        if mode in HOSTILE_MODES:
            return web.Response(body=self._completion(body or {}, self._hostile(mode, body or {})),
                                content_type="application/json")
        if mode == "timeout":
            await asyncio.sleep(self.hang_s)
            return web.Response(body=self._completion(body or {}), content_type="application/json")
        if mode == "malformed_json":
            return web.Response(body=b'{"id": "chatcmpl-stub", "choices": [{"index": 0, "mess',
                                content_type="application/json")
        if mode == "truncated_body":
            full = self._completion(body or {})
            resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Content-Length": str(len(full))})
            await resp.prepare(request)
            await resp.write(full[: len(full) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        if mode == "no_choices":
            return web.json_response({"id": "chatcmpl-stub", "object": "chat.completion",
                                      "choices": []})
        if mode == "no_message":
            return web.json_response({"id": "chatcmpl-stub", "object": "chat.completion",
                                      "choices": [{"index": 0, "finish_reason": "stop"}]})
        if mode == "http_429":
            return self._error(429, "rate limit reached, retry later", "rate_limit_exceeded", request,
                               **{"Retry-After": f"{self.retry_after:g}"})
        status = int(mode.removeprefix("http_"))
        if status == 400:
            return self._error(400, "invalid value for 'temperature': must be a number",
                               "invalid_request_error", request)
        if status == 401:
            return self._error(401, "invalid API key", "authentication_error", request)
        reason = {500: "internal server error", 502: "bad gateway",
                  503: "model is overloaded, try again"}.get(status, f"stub error {status}")
        return self._error(status, reason, "server_error", request)
