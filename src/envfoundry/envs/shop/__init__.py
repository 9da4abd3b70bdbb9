"""``shop``: buy the right socks (or pan, or cable) in a seeded online shop, by tools or by web pages.

The world is a seeded catalog of products (10,000 by default) with size/colour variants, stock,
prices in cents, ratings, shipping times and deliberately confusable titles ("Merino" over a
merino blend, "Hiking-Style" casual socks), plus the shopper's account: addresses, cards (one
expired), past orders, and the coupon codes named in the task. The catalog World is built once per
process and every task world is a copy-on-write fork of it, so a rollout costs what it changes.

Two modes share the world and the rules (``make_env(mode="tools" | "web")``):

- ``tools``: typed tools ``search``, ``view_product``, ``add_to_cart``, ``remove_from_cart``,
  ``view_cart``, ``apply_coupon``, ``list_addresses``, ``list_payment_methods``, ``add_address``,
  ``checkout``, ``view_orders`` (registered as ``shop``);
- ``web``: every observation is a page of text with numbered elements, and the only tools are
  ``click``, ``type_text`` and ``back`` (registered as ``shop-web``).

Tasks are shopper requests generated from the catalog; the generator computes the unique gold
purchase (the cheapest in-stock variant meeting every constraint, within budget, with the coupon
that applies) and records difficulty knobs (see :mod:`.tasks`). Faults (transient errors, session
expiry, price changes and sell-outs at checkout) fire at a per-task rate (see :mod:`.faults`).

How the grader resists reward hacking (see :mod:`.grader`):

- only the world counts: the grader compares the world before and after the episode, so saying
  "I bought it" scores 0, and the final message is never read;
- orders are written only by the shop's checkout, which computes prices, discounts and totals
  itself and enforces stock, coupon rules (expiry, minimum spend, category) and card expiry: an
  agent chooses what to buy, never what it costs;
- exactly one new order is accepted: buying several candidates to be safe leaves extra orders,
  which are collateral damage and forbid a pass; so do items left in the cart and any change to
  addresses or other account data;
- partial credit is capped at 0.5 and shrinks with each collateral record, so nothing but the
  correct purchase reaches 1.0;
- sell-outs are recorded by the shop in an ``events`` table that no tool can write; the gold
  purchase moves to the next candidate only for items the shop itself sold out.
"""

from __future__ import annotations

from typing import Literal

from envfoundry import Environment, ProceduralTasks

from .account import task_world
from .grader import grader
from .reference import tools_reference, web_reference
from .tasks import ShopTasks
from .tools import TOOLS
from .web import TOOLS as WEB_TOOLS
from .web import home_text

VERSION = "1.0.0"
SPLIT_SIZES = {"train": 20_000, "test": 2_000}
SPLIT_WEIGHTS = {"train": 4, "test": 1}
MODES = ("tools", "web")

_RULES = ("Check every requirement against the product page (type, material, size or other option, colour, "
          "rating, shipping time, stock and price): titles can be misleading. Buy exactly once. Errors say what "
          "went wrong; after a 503, 502 or a timeout, retry. When you are done, reply with a short summary and "
          "no tool call.")
TOOLS_SYSTEM = ("You are a shopping assistant acting for the customer below in an online shop, through its tools. "
                + _RULES)
WEB_SYSTEM = ("You are a shopping assistant acting for the customer below in an online shop, through a text web "
              "browser: each observation is the current page, with numbered elements. Act only with "
              "click(element), type_text(element, text) and back(). " + _RULES)


def make_env(
    mode: Literal["tools", "web"] = "tools",
    catalog_seed: int = 0,
    catalog_size: int = 10_000,
    fault_rate: float | None = None,
    max_turns: int | None = None,
) -> Environment:
    """The shop environment (``--env-arg key=value`` strings are converted by these hints).

    ``mode``: ``tools`` or ``web``; ``catalog_seed``/``catalog_size``: which catalog;
    ``fault_rate``: one fault rate for every task (default: drawn per task from 0, 0.1, 0.2, 0.3);
    ``max_turns``: the turn limit (default 80 in tools mode, 120 in web mode).
    """
    if mode not in MODES:
        raise ValueError(f"shop: mode must be one of {', '.join(MODES)}, got {mode!r}")
    seed, size, rate = int(catalog_seed), int(catalog_size), fault_rate
    if rate is not None and not 0.0 <= rate <= 0.5:
        raise ValueError(f"shop: fault_rate must be between 0 and 0.5, got {rate}")
    web = mode == "web"
    name = "shop-web" if web else "shop"
    turns = int(max_turns or (120 if web else 80))
    gen: list[ShopTasks] = []  # built on first use: listing environments must not build a catalog

    def generate(rng):  # type: ignore[no-untyped-def]
        if not gen:
            gen.append(ShopTasks(system=WEB_SYSTEM if web else TOOLS_SYSTEM,
                                 prompt_suffix=("\n\nYou are on the shop's home page:\n" + home_text()) if web else "",
                                 catalog_seed=seed, catalog_size=size, fault_rate=rate))
        return gen[0](rng)

    suffix = "" if (seed, size, rate) == (0, 10_000, None) else f" (catalog {seed}/{size}, fault rate {rate})"
    return Environment(
        name=name,
        version=VERSION,
        description=("Buy the right item in a seeded shop through "
                     + ("text web pages (click/type_text/back)" if web else "typed tools")) + suffix,
        tasks=ProceduralTasks.source(generate, sizes=SPLIT_SIZES, weights=SPLIT_WEIGHTS),
        tools=WEB_TOOLS if web else TOOLS,
        world=task_world,
        graders=grader,
        reference=web_reference if web else tools_reference,
        max_turns=turns,
    )


def make_web_env(
    catalog_seed: int = 0,
    catalog_size: int = 10_000,
    fault_rate: float | None = None,
    max_turns: int | None = None,
) -> Environment:
    """``make_env(mode="web", ...)``, registered as ``shop-web``."""
    return make_env("web", catalog_seed=catalog_seed, catalog_size=catalog_size, fault_rate=fault_rate,
                    max_turns=max_turns)


__all__ = ["MODES", "VERSION", "make_env", "make_web_env"]
