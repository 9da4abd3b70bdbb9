"""envfoundry: build, run, verify and share reinforcement-learning environments for LLM agents.

Everything an environment file needs is importable from here (the public authoring API): the
contract (``Environment``, ``Task``, ``World``, ``tool``, ``Message``, ``Score``, ...), task sources
(``ProceduralTasks``), graders (``StateDiffGrader``, ``RubricGrader`` and the predicates they are
written with), loading and registering (``load``, ``register_env``) and running (``evaluate``).
Other modules are internal: their names may change between versions.
"""

from typing import Any

from .core import *  # noqa: F403
from .core import __all__ as _core_all
from .core.chat import set_chat_factory as _set_chat_factory
from .core.loading import set_url_loader as _set_url_loader
from .core.version import __version__
from .grading import (
    ChangePattern,
    Delete,
    Insert,
    Rubric,
    RubricGrader,
    RubricItem,
    StateDiffGrader,
    StateDiffSpec,
    Update,
    eq,
    ge,
    grade_state_diff,
    gt,
    le,
    lt,
    ne,
    one_of,
    render_transcript,
    same_records,
    satisfies,
)
from .rollout import Run, evaluate, evaluate_async

__all__ = [
    "ChangePattern", "Delete", "Insert", "Rubric", "RubricGrader", "RubricItem", "Run", "StateDiffGrader",
    "StateDiffSpec", "Update", "__version__", "eq", "evaluate", "evaluate_async", "ge", "grade_state_diff", "gt", "le",
    "lt", "ne", "one_of", "render_transcript", "same_records", "satisfies",
]
__all__ += _core_all
# also public, imported on first use: shared_client (a chat client for a model spec, for simulated
# users and judges) and connect (the client of `envfoundry serve`), not in __all__ so that `import *`
# does not pull in aiohttp


def _chat_client(spec: str, *, base_url: str | None = None, api_key_env: str | None = None, retry: Any = None) -> Any:
    """The chat client of a model spec, for judges (``RubricGrader(judge="local")``) and simulated users."""
    from .policies.chat import shared_client

    return shared_client(spec, base_url=base_url, api_key_env=api_key_env, retry=retry)


def _load_url(url: str, args: dict[str, Any]) -> Any:
    """``load("http://HOST:PORT")``: the served environment's client (imported on first use: aiohttp)."""
    from .remote import load_url

    return load_url(url, args)


# `load(URL)` and `--env http://...` reach the client of `envfoundry serve` through core's hook
_set_url_loader(_load_url)

# graders reach model clients through core's contract (grading imports only core); this package,
# above every layer, installs the implementation
_set_chat_factory(_chat_client)


def __getattr__(name: str) -> Any:
    # imported on first use: the model client pulls in aiohttp, which most environments never need
    if name == "shared_client":
        from .policies.chat import shared_client

        return shared_client
    if name == "connect":  # the client of `envfoundry serve` (aiohttp)
        from .remote import connect

        return connect
    raise AttributeError(f"module 'envfoundry' has no attribute {name!r}")
