"""Any value made storable and printable: text that cannot be encoded is escaped, secrets redacted.

A model's reply, a tool's result or an exception's message may hold anything: lone surrogates
(``"\\ud800"`` is valid JSON but not valid Unicode, so it has no UTF-8 encoding), integers beyond
64 bits, structures nested deeper than a JSON encoder follows, or an API key that a proxy echoed.
None of that may stop a run or be written as it is. :func:`storable` is the one place that makes
a value safe; the run store (every record), the OpenAI policy (every reply, before any tool sees
it) and the command line (every error it prints) use it.

- a string that cannot be encoded as UTF-8 keeps its text, with each lone surrogate written as
  its escape (``\\ud800``, a backslash and five characters);
- an integer outside the 64-bit range becomes its decimal text;
- a structure nested deeper than :data:`MAX_DEPTH` is replaced by a note saying so;
- a key that is not a string becomes its text; any other object its ``str()``;
- every registered secret (:func:`register_secret`) is replaced by :data:`REDACTED`.

Each change is reported by its path (``messages.3.tool_calls.0.arguments``), so a record can say
which of its fields were escaped or redacted.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import orjson

REDACTED = "[redacted]"
#: levels of nesting kept (the run store's JSON encoder follows 255)
MAX_DEPTH = 128
#: secrets shorter than this are not redacted from ordinary text: they would match it everywhere
MIN_SECRET_LEN = 8
#: paths reported per kind of change; more are counted in a last entry
MAX_PATHS = 20

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_secret_bytes: tuple[bytes, ...] = ()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (an API key) from everything this process stores or prints from now on.
    Values shorter than :data:`MIN_SECRET_LEN` characters are ignored here (see :func:`redact`)."""
    global _secrets, _secret_bytes
    if not value or len(value) < MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        # longest first: a key that contains another is replaced whole
        _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))
        _secret_bytes = tuple(_json_form(s) for s in _secrets)


#: query parameters whose values are credentials (``?api_key=...``, ``&token=...``)
_SECRET_PARAM = re.compile(r"(key|token|secret|passw|auth|sig)", re.IGNORECASE)


def register_url_secrets(url: str) -> None:
    """Register the credentials a URL carries: the password of ``user:password@host`` and the
    values of query parameters named like a key or token (a base URL is stored and printed)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        register_secret(password)
        register_secret(unquote(password))
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _SECRET_PARAM.search(name):
            register_secret(value)


def registered_secrets() -> tuple[str, ...]:
    return _secrets


def _json_form(s: str) -> bytes:
    """How ``s`` appears inside a JSON string written by orjson."""
    try:
        return orjson.dumps(s)[1:-1]
    except TypeError:  # not encodable itself: it can never appear in an encoded line
        return s.encode("utf-8", "backslashreplace")


def holds_secret(data: bytes) -> bool:
    """Whether encoded JSON ``data`` contains a registered secret."""
    return any(s in data for s in _secret_bytes)


def redact(text: str, also: str | None = None) -> str:
    """``text`` with every registered secret, and ``also`` (any length: a policy's own key in its
    own messages), replaced by :data:`REDACTED`."""
    if also and also in text:
        text = text.replace(also, REDACTED)
    for s in _secrets:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def escape_text(s: str) -> str:
    """``s`` with each lone surrogate written as its ``\\uXXXX`` escape (other text unchanged)."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def encodable(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(s: str, also: str | None = None) -> tuple[str, str | None]:
    """(``s`` escaped and redacted, what was done: ``"escaped"``, ``"redacted"`` or None)."""
    what = None
    if not encodable(s):
        s, what = escape_text(s), "escaped"
    r = redact(s, also)
    if r is not s and r != s:
        return r, what or "redacted"
    return s, what


class Changes:
    """The paths :func:`storable` changed, by kind (``escaped``, ``redacted``)."""

    __slots__ = ("paths",)

    def __init__(self) -> None:
        self.paths: dict[str, list[str]] = {}

    def add(self, kind: str, path: str) -> None:
        paths = self.paths.setdefault(kind, [])
        if len(paths) <= MAX_PATHS:  # the rest are only counted
            path = path if len(path) <= 120 else path[:100] + "..." + path[-16:]
            paths.append(path or "(value)")
        else:
            paths.append("")

    def __bool__(self) -> bool:
        return bool(self.paths)

    def summary(self) -> dict[str, list[str]]:
        """Each kind's paths, at most :data:`MAX_PATHS` and a count of the rest."""
        out = {}
        for kind, paths in self.paths.items():
            more = len(paths) - MAX_PATHS
            out[kind] = paths[:MAX_PATHS] + ([f"... {more} more"] if more > 0 else [])
        return out


def storable(obj: Any, also: str | None = None, changes: Changes | None = None,
             path: str = "") -> tuple[Any, Changes]:
    """A copy of ``obj`` made of dicts with string keys, lists, strings that encode, 64-bit
    integers, floats, booleans and None, with registered secrets and ``also`` redacted; and the
    :class:`Changes` made (added to ``changes`` when given, each path under ``path``)."""
    ch = Changes() if changes is None else changes
    return _walk(obj, path, 0, also, ch), ch


def _walk(x: Any, path: str, depth: int, also: str | None, ch: Changes) -> Any:
    if isinstance(x, str):
        s, what = clean_text(x, also)
        if what:
            ch.add(what, path)
        return s
    if x is None or isinstance(x, (bool, float)):
        return x
    if isinstance(x, int):
        if _INT_MIN <= x <= _INT_MAX:
            return int(x)
        ch.add("escaped", path)
        return str(x) if x.bit_length() < 10_000 else f"(an integer of {x.bit_length()} bits)"
    if depth >= MAX_DEPTH and isinstance(x, (dict, list, tuple)):
        ch.add("escaped", path)
        return f"(nested more than {MAX_DEPTH} levels deep; left out)"
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            key = k if isinstance(k, str) else str(k)
            key, what = clean_text(key, also)
            sub = f"{path}.{key}" if path else key
            if what:
                ch.add(what, sub)
            out[key] = _walk(v, sub, depth + 1, also, ch)
        return out
    if isinstance(x, (list, tuple)):
        return [_walk(v, f"{path}.{i}" if path else str(i), depth + 1, also, ch) for i, v in enumerate(x)]
    try:
        text = str(x)
    except Exception as e:  # noqa: BLE001 - an object whose __str__ fails
        text = f"(unprintable {type(x).__name__}: {type(e).__name__})"
    return _walk(text, path, depth, also, ch)


#: control characters a terminal would act on (all but tab and newline), shown as ``\\xNN``
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))}


def printable(obj: Any) -> Any:
    """``obj`` made :func:`storable`, with control characters in its strings (an escape sequence
    in a model's reply, NUL) written as ``\\xNN``: safe to print to a terminal."""
    clean, _ = storable(obj)
    return _controls(clean)


def show_controls(s: str) -> str:
    """``s`` with control characters (all but tab and newline) written as ``\\xNN``."""
    return s if s.isprintable() else s.translate(_CONTROLS)


def _controls(x: Any) -> Any:
    if isinstance(x, str):
        return show_controls(x)
    if isinstance(x, dict):
        return {_controls(k): _controls(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_controls(v) for v in x]
    return x


def dumps(obj: Any, option: int = 0) -> tuple[bytes, Changes | None]:
    """``obj`` as JSON bytes (orjson ``option``): as it is when it encodes and holds no secret,
    else made :func:`storable` first; with the changes made (None when none were needed)."""
    try:
        data = orjson.dumps(obj, default=str, option=option)
    except TypeError:  # orjson.JSONEncodeError: surrogates, big integers, depth, key types
        data = None
    if data is not None and not (_secret_bytes and holds_secret(data)):
        return data, None
    clean, ch = storable(obj)
    return orjson.dumps(clean, option=option), ch
