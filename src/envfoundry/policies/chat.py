"""A blocking chat-completions client for code that is synchronous by contract: graders (an LLM
judge) and simulated users (an LLM customer), both called from inside the engine's event loop.

``ChatClient(spec)`` takes the same model specs as ``--model`` (``local``, ``local:PATH.gguf``,
``openai:NAME`` with ``base_url``). Requests run on a private event loop in a daemon thread with
the same aiohttp transport, retries and error classification as :class:`OpenAIPolicy`; the
caller's thread just waits for the result. So calling :meth:`ChatClient.complete` from a
coroutine blocks that loop for the length of one request but can never deadlock it: nothing the
request needs runs on the caller's loop. (``local`` starts its own llama.cpp server on first use,
from the client's thread, and stops it on :meth:`close` or at interpreter exit.)

Failures after retries raise :class:`~envfoundry.core.errors.PolicyError`; a judge turns that into
``GraderUndecided``.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from ..core.errors import PolicyError, UsageError
from .openai import OpenAIPolicy, RetryConfig, _content_text

_MASK = (1 << 31) - 1


class ChatClient:
    """Blocking ``complete(messages) -> text`` against a model spec.

    Args:
        spec: ``local``, ``local:PATH.gguf`` or ``openai:NAME``.
        base_url, api_key_env: for ``openai:`` specs (as on the command line).
        retry: attempts, backoff and per-request timeout (default: the policy defaults; local
            models get 600 s per request because llama.cpp queues concurrent requests).
        n_ctx: context size of a local server (judge prompts hold a transcript and a rubric).
    """

    def __init__(self, spec: str = "local", *, base_url: str | None = None, api_key_env: str | None = None,
                 retry: RetryConfig | None = None, n_ctx: int = 4096) -> None:
        kind, _, rest = spec.partition(":")
        if kind not in ("local", "openai"):
            raise UsageError(f"a chat client needs a model spec local, local:PATH.gguf or openai:NAME, got {spec!r}")
        if kind == "openai" and (not rest or not base_url):
            raise UsageError(f"{spec!r} needs a model name and base_url (the server's API root ending in /v1)")
        self.spec = spec
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.retry = retry
        self.n_ctx = n_ctx
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._owner: Any = None  # the LocalPolicy that owns a local server
        self._policy: OpenAIPolicy | None = None

    def __repr__(self) -> str:
        return f"ChatClient({self.spec!r})"

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "base_url": self.base_url}

    # ------------------------------------------------------------------ lifecycle
    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready: Future[None] = Future()

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    loop.run_until_complete(self._start())
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    ready.set_exception(e)
                    loop.close()
                    return
                ready.set_result(None)
                loop.run_forever()
                loop.run_until_complete(self._stop())
                loop.close()

            thread = threading.Thread(target=run, name=f"envfoundry-chat-{self.spec}", daemon=True)
            thread.start()
            ready.result()
            self._loop, self._thread = loop, thread
            atexit.register(self.close)
            return loop

    async def _start(self) -> None:
        kind, _, rest = self.spec.partition(":")
        if kind == "local":
            from .embedded import LocalPolicy

            owner = LocalPolicy(rest or None, retry=self.retry, n_ctx=self.n_ctx, slots=1)  # one request at a time
            await owner.start()  # spawns the server from this (long-lived) thread
            self._owner = owner
            self._policy = owner.clients[0]
        else:
            import os

            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            if self.api_key_env and not key:
                raise UsageError(f"environment variable {self.api_key_env!r} is not set")
            assert self.base_url is not None
            self._policy = OpenAIPolicy(rest, base_url=self.base_url, api_key=key, retry=self.retry,
                                        tool_mode="native", concurrency=8)
            await self._policy.start()

    async def _stop(self) -> None:
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:  # requests whose caller gave up (an interrupt): cancelled, and awaited
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._policy is not None:
            await self._policy.close()
        if self._owner is not None:
            self._owner.stop_servers()  # blocking is fine here, and works during interpreter shutdown
        self._owner = self._policy = None

    def close(self) -> None:
        """Stop the private loop (and a local server); the client starts again on next use."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        atexit.unregister(self.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)

    # ------------------------------------------------------------------- requests
    def complete(self, messages: Sequence[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 256,
                 seed: int = 0, top_p: float = 1.0) -> str:
        """The assistant's reply text; raises :class:`PolicyError` when the server fails after retries."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            raise RuntimeError("ChatClient.complete() called from its own loop thread")
        assert self._policy is not None
        body = {"model": self._policy.model, "messages": list(messages), "temperature": temperature,
                "top_p": top_p, "max_tokens": max_tokens, "seed": seed & _MASK}
        fut = asyncio.run_coroutine_threadsafe(self._policy._complete(body), loop)
        try:
            msg, _ = fut.result()
        except BaseException:  # e.g. Ctrl-C while waiting: the request must not outlive its caller
            fut.cancel()
            raise
        # any shape of content as text, lone surrogates escaped and the key redacted (a judge stores it)
        return self._policy._say(_content_text(msg.get("content")))


_SHARED: dict[tuple[Any, ...], ChatClient] = {}
_SHARED_LOCK = threading.Lock()


def shared_client(spec: str, *, base_url: str | None = None, api_key_env: str | None = None,
                  retry: RetryConfig | None = None) -> ChatClient:
    """One client per (spec, base_url, key variable, retry) in this process, so that an LLM
    customer and an LLM judge on ``local`` share one llama.cpp server."""
    key = (spec, base_url, api_key_env, retry.model_dump_json() if retry else None)
    with _SHARED_LOCK:
        c = _SHARED.get(key)
        if c is None:
            c = _SHARED[key] = ChatClient(spec, base_url=base_url, api_key_env=api_key_env, retry=retry)
        return c


__all__ = ["ChatClient", "PolicyError", "shared_client"]
