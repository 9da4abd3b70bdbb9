"""The chat-client contract: what an LLM judge or a simulated user sends a conversation to.

A :class:`ChatLike` is any object with ``complete(messages, *, temperature, max_tokens, seed) ->
str`` that raises :class:`~envfoundry.core.errors.PolicyError` when the model cannot answer (after
its retries). :func:`chat_client` turns a model spec (``local``, ``openai:NAME``) into one through
the factory that the package implementing clients installs (:func:`set_chat_factory`; importing
``envfoundry`` installs :func:`envfoundry.policies.chat.shared_client`, imported on first use). So a
grader depends on this contract, never on the client's implementation.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import UsageError


@runtime_checkable
class ChatLike(Protocol):
    """A blocking chat client: the assistant's reply to ``messages``."""

    def complete(self, messages: Sequence[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 256,
                 seed: int = 0) -> str: ...


class ChatFactory(Protocol):
    """Makes the chat client of a model spec (sharing one per spec is the factory's choice)."""

    def __call__(self, spec: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 retry: Any = None) -> ChatLike: ...


_lock = threading.Lock()
_factory: ChatFactory | None = None


def set_chat_factory(factory: ChatFactory | None) -> ChatFactory | None:
    """Install the factory :func:`chat_client` uses (None: none); the previous one is returned, so
    a test can put it back."""
    global _factory
    with _lock:
        previous, _factory = _factory, factory
    return previous


def chat_client(spec: str, *, base_url: str | None = None, api_key_env: str | None = None,
                retry: Any = None) -> ChatLike:
    """The chat client of the model spec ``spec``, from the installed factory."""
    factory = _factory
    if factory is None:
        raise UsageError(f"no chat client can be made for the model spec {spec!r}: no chat client factory is "
                         "installed (import envfoundry, or pass an object with complete(messages, ...))")
    return factory(spec, base_url=base_url, api_key_env=api_key_env, retry=retry)
