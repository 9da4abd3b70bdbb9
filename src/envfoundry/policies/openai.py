"""A policy backed by any OpenAI-compatible ``/v1/chat/completions`` server.

Works with OpenAI, vLLM, SGLang, llama.cpp's server, Ollama and the like. One ``aiohttp`` session
per policy (opened by :meth:`OpenAIPolicy.start`, or by the first request) carries every request;
each request is built as a plain dict and its reply read with ``json.loads`` (``orjson`` when
installed), so the per-request overhead stays far below a model's latency.

Failures
--------
Infrastructure faults are retried with bounded exponential backoff and full jitter
(``RetryConfig``): connection refused or reset, no reply within ``request_timeout_s``, HTTP 408,
429 (waiting ``Retry-After`` seconds when given, at most ``4 * max_delay_s``) and 5xx, a body that
is cut short or is not JSON, a reply without ``choices`` or a choice without ``message``. When
the attempts run out the policy raises :class:`~envfoundry.core.errors.PolicyError` naming the
server, the number of attempts and the last cause, and the rollout ends as ``policy_error`` (never
with a score); when the last try could not connect at all, it is the subclass ``ServerUnreachable``.
Any other 4xx (bad request, bad key, unknown model, wrong URL) is not retried: the
``PolicyError`` carries the server's own message. Cancellation is never caught: cancelling a
rollout closes its request's connection. The API key never appears in any message the policy
produces (some proxies repeat it in their error bodies): it is redacted there, and registered
with :mod:`envfoundry.core.sanitize` so that nothing this process stores or prints holds it.

Whatever the model returns
--------------------------
A reply is data, never a reason to stop: content and tool calls of any shape become an action
(a name that is not a string, arguments that are not an object, missing fields: the environment
answers with an error and the episode goes on). Text that cannot be encoded (lone surrogates,
also as ``\\ud800`` escapes inside tool-call arguments) is escaped before any tool sees it,
integers beyond 64 bits become text, structures nested deeper than
:data:`~envfoundry.core.sanitize.MAX_DEPTH` are left out; the turn's policy info lists the
fields changed under ``escaped`` (and ``redacted``). A body that is valid JSON only for a
lenient parser (lone surrogates) is read with one.

Tool calling
------------
``tool_mode="native"`` sends the environment's tools as ``tools`` and reads the reply's
``tool_calls``. ``tool_mode="text"`` uses the text protocol of
:mod:`envfoundry.policies.tool_protocol` (``<tool_call>`` blocks), for models without native
function calling. ``tool_mode="auto"`` (the default) starts native and switches this policy to
the text protocol for good when the server rejects a request that has ``tools`` with an error
mentioning tools; it also reads ``<tool_call>`` blocks from a native reply that has no
``tool_calls`` (servers that accept ``tools`` but leave the model's calls in its text).

Seeds
-----
Every request carries a ``seed``: ``SamplingOptions.seed`` when set (the same for every request),
otherwise one derived from the episode's seed and turn, so that rollouts repeat exactly on servers
that honour seeds while the samples of a group still differ.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import email.utils
import json
import os
import pickle
import random
import re
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from ..core.env import Episode
from ..core.errors import PolicyError, ServerUnreachable, UsageError
from ..core.messages import Message, ToolCall
from ..core.outcome import Usage
from ..core.policy import PolicyOutput
from ..core.sanitize import Changes, clean_text, redact, register_secret, register_url_secrets, storable
from ..core.seeding import derive_seed
from .tool_protocol import INVALID_TOOL, parse_tool_calls, render_tool_call, text_messages, tools_system_prompt

try:  # optional: a faster JSON codec when installed
    import orjson

    _loads = orjson.loads

    def _dumps(obj: Any) -> bytes:
        try:
            return orjson.dumps(obj)
        except TypeError:  # a tool's result that cannot be encoded: sent escaped
            return orjson.dumps(storable(obj)[0])

except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(storable(obj)[0], ensure_ascii=False, separators=(",", ":")).encode()


__all__ = [
    "INVALID_TOOL", "TOOL_MODES", "OpenAIPolicy", "RetryConfig", "SamplingOptions", "ToolMode",
    "parse_tool_calls", "render_tool_call", "text_messages", "tools_system_prompt",
]

ToolMode = Literal["auto", "native", "text"]
TOOL_MODES: tuple[str, ...] = ("auto", "native", "text")

_SEED_MASK = (1 << 31) - 1
#: a JSON escape of a surrogate code point (a lone one has no UTF-8 encoding)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
#: the most tokens a reply's usage may claim (more is taken as a broken count: 0)
_MAX_TOKENS = 1 << 40
_TOOLS_WORD = re.compile(r"\btools?\b|tool_choice|function[ _]?call", re.IGNORECASE)


class SamplingOptions(BaseModel):
    """Sampling parameters sent with every request. ``seed=None`` derives one per request from
    the episode's seed and turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # the ranges of the command line's --temperature, --top-p, --max-tokens, --model-seed (cli/vocabulary.py):
    # finite, and integers that fit the 32-bit fields of model servers
    temperature: float = Field(0.7, ge=0.0, le=100.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    max_tokens: int = Field(256, ge=1, le=2**31 - 1)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


class RetryConfig(BaseModel):
    """How infrastructure faults are retried: ``max_attempts`` tries in all, waiting a random
    time in ``[0, min(max_delay_s, base_delay_s * 2**(attempt-1))]`` between them; each try may
    take ``request_timeout_s`` seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(5, ge=1)
    base_delay_s: float = Field(0.25, ge=0.0)
    max_delay_s: float = Field(8.0, ge=0.0)
    request_timeout_s: float = Field(60.0, gt=0.0)


class _Retryable(Exception):
    """An infrastructure fault worth another try; ``wait_s`` overrides the backoff."""

    def __init__(self, cause: str, wait_s: float | None = None) -> None:
        super().__init__(cause)
        self.wait_s = wait_s


class _ToolsRejected(Exception):
    """The server refused a request because of its ``tools`` (auto mode falls back to text)."""


class OpenAIPolicy:
    """A model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        model: the model name the server knows.
        base_url: the API root, ending in ``/v1`` (requests go to ``{base_url}/chat/completions``).
        api_key: sent as ``Authorization: Bearer ...``; never recorded (not in :meth:`describe`).
        api_key_env: the name of the environment variable the key came from, recorded (the name,
            not the key) so that a resumed run reads the same variable.
        sampling: temperature, top_p, max_tokens and seed.
        retry: attempts, backoff and the per-request timeout.
        tool_mode: ``auto``, ``native`` or ``text`` (see the module documentation).
        concurrency: the most connections kept open to the server; give it at least the number
            of rollouts run at once (a request waiting for a connection uses up its timeout).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        api_key_env: str | None = None,
        sampling: SamplingOptions | None = None,
        retry: RetryConfig | None = None,
        tool_mode: ToolMode = "auto",
        concurrency: int = 64,
    ) -> None:
        if not model:
            raise UsageError("OpenAIPolicy needs a model name")
        if tool_mode not in TOOL_MODES:
            raise UsageError(f"tool_mode must be one of {', '.join(TOOL_MODES)}, got {tool_mode!r}")
        if concurrency < 1:
            raise UsageError(f"concurrency must be >= 1, got {concurrency}")
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.name = model
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.sampling = sampling or SamplingOptions()
        self.retry = retry or RetryConfig()
        self.tool_mode: ToolMode = tool_mode
        self.concurrency = concurrency
        self._api_key = api_key
        register_secret(api_key)  # never stored or printed by this process
        register_url_secrets(base_url)  # nor a password or token written into the URL
        self.api_key_env = api_key_env
        self._url = f"{self.base_url}/chat/completions"
        self._session: aiohttp.ClientSession | None = None
        self._text_fallback = False  # auto mode: the server refused native tools
        self._rng = random.Random(derive_seed("openai-policy", model, self.base_url))
        self._tools_text: dict[int, tuple[list[dict[str, Any]], str]] = {}
        s = self.sampling
        self._params: dict[str, Any] = {
            "model": model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }

    def __repr__(self) -> str:
        return f"OpenAIPolicy(model={self.model!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------ lifecycle
    def describe(self) -> dict[str, Any]:
        return {
            "spec": f"openai:{self.model}",
            "base_url": redact(self.base_url),  # a password or token in the URL is never stored
            "sampling": self.sampling.model_dump(),
            "tool_mode": self.tool_mode,
            "retry": self.retry.model_dump(),
            **({"api_key_env": self.api_key_env} if self.api_key_env else {}),
        }

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=self.retry.request_timeout_s),
            headers=headers,
        )

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for worker processes: without the session (a worker opens its own) and caches."""
        state = self.__dict__.copy()
        state["_session"] = None
        state["_tools_text"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        register_secret(self._api_key)  # a worker process redacts it too
        register_url_secrets(self.base_url)
        # retry jitter of its own in each worker process (it never affects what a rollout records)
        self._rng = random.Random(derive_seed("openai-policy", self.model, self.base_url, os.getpid()))

    def for_worker(self, concurrency: int | None = None) -> OpenAIPolicy:
        """A copy for a worker process (``rollout.pool``): same server and options, no session."""
        pol: OpenAIPolicy = pickle.loads(pickle.dumps(self))
        if concurrency is not None:
            pol.concurrency = concurrency
        return pol

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ---------------------------------------------------------------- acting
    @property
    def uses_text_tools(self) -> bool:
        """Whether tools are offered with the text protocol (text mode, or auto after a
        server refused native tools)."""
        return self.tool_mode == "text" or self._text_fallback

    async def act(self, ep: Episode) -> PolicyOutput:
        if self._session is None:
            await self.start()
        schemas = ep.env.tool_schemas()
        text = bool(schemas) and self.uses_text_tools
        seed = self.sampling.seed
        if seed is None:
            seed = derive_seed(ep.seed, ep.turns) & _SEED_MASK
        try:
            msg, data = await self._complete(self._request(ep, schemas, text, seed))
        except _ToolsRejected:
            self._text_fallback = text = True
            msg, data = await self._complete(self._request(ep, schemas, True, seed))
        return self._output(msg, data, bool(schemas), text)

    def _request(
        self, ep: Episode, schemas: list[dict[str, Any]], text: bool, seed: int
    ) -> dict[str, Any]:
        body = dict(self._params)
        if text:
            body["messages"] = text_messages(ep.messages, self._tools_prompt(schemas))
        else:
            body["messages"] = _native_messages(ep.messages)
            if schemas:
                body["tools"] = schemas
        body["seed"] = seed
        return body

    def _tools_prompt(self, schemas: list[dict[str, Any]]) -> str:
        hit = self._tools_text.get(id(schemas))
        if hit is not None and hit[0] is schemas:
            return hit[1]
        text = tools_system_prompt(schemas)
        self._tools_text[id(schemas)] = (schemas, text)
        return text

    def _output(
        self, msg: dict[str, Any], data: dict[str, Any], has_tools: bool, text: bool
    ) -> PolicyOutput:
        changes = Changes()
        content = self._clean(_content_text(msg.get("content")), "content", changes)
        calls: list[ToolCall] = []
        problems: list[str] = []
        raw_calls = msg.get("tool_calls") or []
        if not isinstance(raw_calls, list):  # one call given bare, or nonsense: still a call
            raw_calls = [raw_calls]
        for c in raw_calls:
            fn = c.get("function") if isinstance(c, dict) else None
            if not isinstance(fn, dict):
                fn = {}
            name = fn.get("name")
            name = name if isinstance(name, str) else ("" if name is None else _json_text(name))
            args = fn.get("arguments")
            if args is None:
                args = ""
            elif not isinstance(args, (str, dict)):
                args = _json_text(args)  # the tool reports that arguments must be an object
            call_id = c.get("id") if isinstance(c, dict) else None
            calls.append(ToolCall(name or INVALID_TOOL, args, "" if call_id is None else str(call_id)))
        if has_tools and not calls and "<tool_call>" in content:
            calls, problems = parse_tool_calls(content)
        for i, call in enumerate(calls):
            where = f"tool_calls.{i}"
            call.name = self._clean(call.name, f"{where}.name", changes)
            call.id = self._clean(call.id, f"{where}.id", changes)
            call.arguments = self._clean_arguments(call.arguments, f"{where}.arguments", changes)
        choice = data["choices"][0]
        info: dict[str, Any] = {"finish_reason": choice.get("finish_reason") if isinstance(choice, dict) else None}
        if text:
            info["tool_protocol"] = "text"
        if problems:
            info["tool_call_errors"] = problems
        if changes:
            info.update(changes.summary())
        usage = data.get("usage")
        u = (
            Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
            if isinstance(usage, dict) else Usage()
        )
        return PolicyOutput(Message("assistant", content, calls), u, info)

    def _clean(self, s: str, path: str, changes: Changes) -> str:
        """``s`` with lone surrogates escaped and registered keys (this one too, unless it is too
        short to tell from ordinary text) redacted; a change is noted at ``path``."""
        out, what = clean_text(s)
        if what:
            changes.add(what, path)
        return out

    def _clean_arguments(self, args: str | dict[str, Any], path: str, changes: Changes) -> str | dict[str, Any]:
        """Arguments no tool needs to fear: text escaped and the key redacted, also where a JSON
        escape in the model's text would decode to a lone surrogate."""
        if isinstance(args, dict):
            clean, _ = storable(args, None, changes, path)
            return clean  # type: ignore[no-any-return]
        args = self._clean(args, path, changes)
        if _SURROGATE_ESCAPE.search(args):
            try:
                obj = json.loads(args)
            except (ValueError, RecursionError):
                return args  # not JSON: the tool says so
            clean, ch = storable(obj)
            if ch:  # a lone surrogate (a valid pair decodes to its character and changes nothing)
                changes.add("escaped", path)
                return json.dumps(clean, ensure_ascii=False)
        return args

    # -------------------------------------------------------------- transport
    async def _complete(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """POST with retries; returns (choices[0].message, whole reply)."""
        session = self._session
        assert session is not None
        payload = _dumps(body)
        may_fall_back = self.tool_mode == "auto" and "tools" in body
        r = self.retry
        cause = ""
        for attempt in range(1, r.max_attempts + 1):
            wait_s: float | None = None
            unreachable = False  # the last try could not even connect: nothing listens there now
            try:
                async with session.post(self._url, data=payload) as resp:
                    raw = await resp.read()
                    status = resp.status
                    if 200 <= status < 300:
                        return _extract(raw)
                    text = _error_text(raw)
                    if may_fall_back and status != 429 and _TOOLS_WORD.search(text):
                        raise _ToolsRejected(text)
                    if status == 429:
                        raise _Retryable(
                            f"HTTP 429: {text}",
                            _retry_after(resp.headers.get("Retry-After"), 4 * r.max_delay_s),
                        )
                    if status == 408 or status >= 500:
                        raise _Retryable(f"HTTP {status}: {text}")
                    hint = " (check base_url: it should end in /v1)" if status == 404 else ""
                    raise PolicyError(self._say(
                        f"model server at {self.base_url} rejected the request "
                        f"(not retried): HTTP {status}: {text}{hint}"
                    ))
            except _Retryable as e:
                cause, wait_s = str(e), e.wait_s
            except TimeoutError:
                cause = f"no reply within {r.request_timeout_s:g}s (request timeout)"
            except aiohttp.InvalidURL as e:
                raise PolicyError(self._say(f"invalid model server URL {self._url!r}: {e}")) from None
            except aiohttp.ClientPayloadError as e:
                cause = f"response body cut short ({_short(str(e))})"
            except aiohttp.ClientConnectorError as e:
                cause, unreachable = f"cannot connect: {_short(str(e))}", True
            except aiohttp.ServerDisconnectedError:
                cause = "server closed the connection without a reply"
            except aiohttp.ClientError as e:  # connection reset and other transport failures
                cause = f"{type(e).__name__}: {e}"
            if attempt < r.max_attempts:
                await asyncio.sleep(wait_s if wait_s is not None else self._backoff(attempt))
        times = "time" if r.max_attempts == 1 else "times"
        raise (ServerUnreachable if unreachable else PolicyError)(self._say(
            f"model server at {self.base_url} failed {r.max_attempts} {times}: {cause}"
        ))

    def _say(self, message: str) -> str:
        """A message of this policy's, safe to store and print: the key redacted (whatever its
        length), text that cannot be encoded escaped."""
        return clean_text(message, self._api_key)[0]

    def _backoff(self, attempt: int) -> float:
        r = self.retry
        return self._rng.uniform(0.0, min(r.max_delay_s, r.base_delay_s * 2 ** (attempt - 1)))


# ------------------------------------------------------------------ helpers
def _short(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _content_text(content: Any) -> str:
    """A reply's content as text: a string, the text parts of a list of parts, or JSON text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] if isinstance(p, dict) and isinstance(p.get("text"), str) else ""
                       for p in content)
    return _json_text(content)


def _json_text(value: Any) -> str:
    """``value`` as JSON text, whatever it holds (nesting beyond the limit left out)."""
    return json.dumps(storable(value)[0], ensure_ascii=False)


def _count(v: Any) -> int:
    """A token count from a reply's usage; anything but a sane non-negative number counts 0."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return 0
    if not 0 <= v < _MAX_TOKENS:  # NaN fails this too
        return 0
    return int(v)


def _error_text(raw: bytes) -> str:
    """The server's own error message from an error body (OpenAI, FastAPI or plain text)."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return _short(raw.decode("utf-8", "replace")) or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail", obj.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return _short(err if isinstance(err, str) else _json_text(err))
    return _short(_json_text(obj))


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.UTC)
        seconds = (when - _dt.datetime.now(_dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), cap)


def _extract(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = _loads(raw)
    except ValueError as e:
        try:  # valid JSON that is not valid Unicode (a lone surrogate's escape): read leniently
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise _Retryable(f"malformed JSON in response body ({_short(str(e), 120)})") from None
    if not isinstance(data, dict):
        raise _Retryable(f"response body is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list):
        err = data.get("error")
        why = f": {_error_text(_json_text(data).encode('utf-8', 'backslashreplace'))}" if err else ""
        raise _Retryable(f"response has no choices{why}")
    choice = choices[0]
    msg = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(msg, dict):
        raise _Retryable("response choice has no message")
    return msg, data


def _arguments_json(arguments: str | dict[str, Any]) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _native_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in OpenAI's chat format (tool calls with JSON-string arguments)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.role
        if role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content})
        elif role == "assistant" and m.tool_calls:
            out.append({
                "role": "assistant",
                "content": m.content,
                "tool_calls": [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": _arguments_json(c.arguments)}}
                    for c in m.tool_calls
                ],
            })
        else:
            out.append({"role": role, "content": m.content})
    return out
