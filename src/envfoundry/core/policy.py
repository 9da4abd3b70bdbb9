"""The policy contract: who acts in an episode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .messages import Action
from .outcome import Usage

if TYPE_CHECKING:
    from .env import Episode


@dataclass(slots=True)
class PolicyOutput:
    """One turn of a policy: the action, the tokens it cost and anything worth recording."""

    action: Action
    usage: Usage = field(default_factory=Usage)
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """Produces the next action for an episode.

    A model policy reads only ``ep.messages`` and ``ep.env.tool_schemas()``; scripted probes may
    read more (the oracle asks the environment for its reference solution) and say so.
    Raise :class:`~envfoundry.core.errors.PolicyError` for infrastructure failures after retries:
    the rollout then ends as ``policy_error``, never with a score.

    With ``workers`` > 1 the policy is pickled to each worker process; a policy that owns
    something unpicklable (a server, a session) may define ``for_worker() -> Policy``, called
    after :meth:`start`, to hand out a picklable client instead.
    """

    name: str

    async def act(self, ep: Episode) -> PolicyOutput: ...

    def describe(self) -> dict[str, Any]:
        """What to record in the run manifest (never secrets)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class KeepAlive:
    """One policy shared by several runs (calibration rounds, benchmark rounds): started by the
    first run that needs it (a local model server starts once, and not at all when nothing is
    left to run), never closed by a run; its owner closes ``policy`` at the end."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.name = policy.name
        self.started = False

    async def act(self, ep: Episode) -> PolicyOutput:
        return await self.policy.act(ep)

    def describe(self) -> dict[str, Any]:
        return self.policy.describe()

    async def start(self) -> None:
        if not self.started:
            self.started = True  # so the driver closes it even if start() fails half-way
            await self.policy.start()

    async def close(self) -> None:
        return None

    def for_worker(self) -> Policy:  # workers > 1: what the wrapped policy hands out
        fn = getattr(self.policy, "for_worker", None)
        return fn() if callable(fn) else self.policy
