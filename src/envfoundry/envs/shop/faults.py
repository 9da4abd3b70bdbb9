"""Seeded failure injection: what a real shop does to an agent, reproducible from the episode seed.

With a task's ``fault_rate`` r (0 turns everything off), in this order on each call:

- **transient** (per call, probability r): a 503, 502 or timeout error; nothing changes, and the
  message invites a retry. Never more than two in a row, so a retry after two failures goes through.
- **session expiry** (per call while the cart is not empty, probability r/4, at most once per
  episode): the call fails, the cart is emptied and any coupon is removed.
- **checkout** (at the first checkout that passes validation, probability r, at most once):
  either the price of a cart item goes up (the checkout fails, the cart shows the new price, a
  second checkout confirms) or an item sells out (it is removed from the cart; the right purchase
  becomes the next-cheapest item that meets the task). A task's private data bounds both so that
  every task stays solvable: a price never rises past the budget or past the next candidate's
  price, and only an item with a next candidate can sell out.

The random stream is ``derive_seed("shop-faults", episode seed)``, separate from ``ep.rng`` so
that faults do not depend on how much randomness a policy draws. State-changing faults are also
written to the world's ``events`` table (which graders ignore, and which the shop grader reads to
learn which items sold out).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from envfoundry import ToolError, World, derive_seed

from .account import SESSION


class PricedLine(Protocol):
    """What a checkout fault reads of a cart line (a :class:`.store.Line`)."""

    @property
    def variant_id(self) -> str: ...
    @property
    def unit_cents(self) -> int: ...

_TRANSIENT = (
    "503 Service Unavailable: the shop is overloaded. Nothing was changed; please retry",
    "502 Bad Gateway: the request did not reach the shop. Nothing was changed; please retry",
    "request timed out after 30 s. Nothing was changed; please retry",
)
SESSION_EXPIRED = ("401 session expired: you were signed in again automatically, but your cart was "
                   "emptied and any coupon removed. Nothing else changed; add the items again")


@dataclass
class Faults:
    """The fault injector of one episode (kept in ``ep.state["faults"]``)."""

    rate: float
    seed: int
    #: variant id -> largest safe price rise in cents (absent: any variant not in the task's answer)
    bump_max: Mapping[str, int] = field(default_factory=dict)
    #: variants that must never sell out (the last candidate of a task)
    keep: frozenset[str] = frozenset()
    log: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(derive_seed("shop-faults", self.seed))
        self._streak = 0
        self._expired = False
        self._checkout_done = False

    def _event(self, world: World, kind: str, **info: Any) -> None:
        self.log.append({"kind": kind, "call": self.calls, **info})
        if kind != "transient":
            world.insert("events", f"e{len(self.log)}", {"type": kind, "call": self.calls, **info})

    def on_call(self, world: World, op: str) -> None:
        """Run before every call that talks to the shop; raises ToolError when a fault fires."""
        self.calls += 1
        if self.rate <= 0:
            return
        if self._streak < 2 and self._rng.random() < self.rate:
            self._streak += 1
            self._event(world, "transient", op=op)
            raise ToolError(self._rng.choice(_TRANSIENT))
        self._streak = 0
        if not self._expired and any(True for _ in world.keys("cart_items")) \
                and self._rng.random() < self.rate / 4:
            self._expired = True
            for vid in list(world.keys("cart_items")):
                world.delete("cart_items", vid)
            world.update("sessions", SESSION, coupon=None)
            self._event(world, "session_expired", op=op)
            raise ToolError(SESSION_EXPIRED)

    def at_checkout(self, world: World, lines: Iterable[PricedLine]) -> None:
        """Maybe raise a price or sell an item out (the checkout's own checks then report it)."""
        if self.rate <= 0 or self._checkout_done:
            return
        self._checkout_done = True
        if self._rng.random() >= self.rate:
            return
        options = []
        for ln in lines:
            cap = self.bump_max.get(ln.variant_id, 150)
            if cap >= 10:
                options.append(("price_change", ln, cap))
            if ln.variant_id not in self.keep:
                options.append(("sold_out", ln, 0))
        if not options:
            return
        kind, ln, cap = self._rng.choice(options)
        if kind == "price_change":
            new = ln.unit_cents + self._rng.randint(min(10, cap), cap)
            world.update("variants", ln.variant_id, price_cents=new)
            self._event(world, kind, variant_id=ln.variant_id, before=ln.unit_cents, after=new)
        else:
            world.update("variants", ln.variant_id, stock=0)
            self._event(world, kind, variant_id=ln.variant_id)

    def count(self, kind: str) -> int:
        return sum(1 for e in self.log if e["kind"] == kind)
