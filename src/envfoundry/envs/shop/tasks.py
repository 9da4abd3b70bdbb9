"""Shopping tasks generated from the catalog, each with a computed, unique gold purchase.

A generator draws an anchor product and variant, turns some of its attributes into the shopper's
constraints, then computes every in-stock variant that meets them; the gold purchase is the
cheapest (ties are re-drawn, so it is unique). Knobs recorded in ``metadata``: ``n_constraints``,
``distractors`` (variants of the kind that miss exactly one constraint), ``depth`` (rank of the
gold product in the default search for the plain request), ``out_of_stock`` (cheaper matching
variants set to stock 0 for this task), ``coupon`` (none / applies / decoys / applies+decoys),
``budget_slack``, ``budget_needs_coupon``, ``fault_rate``, ``quantity``, and ``difficulty`` (1-6,
one point each for 4+ constraints, depth > 10, out-of-stock traps, coupon decoys or a budget that
needs the coupon, and faults).

The problem key is the gold product, so no product is the answer in two splits.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from envfoundry import Task

from .account import ADDRESS_PHRASES, TODAY, account_tables
from .catalog import Catalog, ProductRow, VariantRow, get_catalog, money
from .vocab import BLEND_OF, CATEGORIES, KINDS, Kind

SOCK_KINDS = tuple(k for k in KINDS if k.category == "socks")
OTHER_KINDS = tuple(k for k in KINDS if k.category != "socks")
_SOCK_CUM = list(itertools.accumulate(k.weight for k in SOCK_KINDS))
_OTHER_CUM = list(itertools.accumulate(k.weight for k in OTHER_KINDS))
_NUM = {1: "one", 2: "two", 3: "three"}
_PAIRS = ("socks", "shoes")
_SINGULAR = {"chef's knives": "chef's knife", "usb-c cables": "USB-C cable", "wireless earbuds": "wireless earbuds"}


def unit_phrase(kind: Kind, qty: int) -> str:
    """``two pairs of hiking socks``, ``one frying pan``."""
    n = _NUM.get(qty, str(qty))
    if kind.category in _PAIRS or kind.name in ("wireless earbuds", "winter gloves"):
        return f"{n} pair{'s' if qty > 1 else ''} of {kind.name}"
    one = _SINGULAR.get(kind.name, kind.name[:-1] if kind.name.endswith("s") else kind.name)
    return f"{n} {one if qty == 1 else kind.name}"


def _matching(rows: tuple[ProductRow, ...], cons: Mapping[str, Any]) -> tuple[list[VariantRow], int]:
    """(variants meeting every constraint, variants missing exactly one: the near misses)."""
    mat, brand, rating, ship, size, colour = (
        cons.get(k) for k in ("material", "brand", "min_rating", "max_ship_days", "size", "colour"))
    hits, near = [], 0
    for p in rows:
        pm = ((mat is not None and p.material != mat) + (brand is not None and p.brand != brand)
              + (rating is not None and p.rating < rating) + (ship is not None and p.ship_days > ship))
        if pm > 1:
            continue
        for v in p.variants:
            m = pm + (size is not None and v.size != size) + (colour is not None and v.colour != colour)
            if m == 0:
                hits.append(v)
            elif m == 1:
                near += 1
    return hits, near


def _coupon_code(rng: random.Random, value: int, kind: str) -> str:
    head = rng.choice(("SAVE", "WELCOME", "SPRING", "TRAIL", "HELLO", "FLASH", "SUMMER", "CLUB", "LOYAL"))
    return f"{head}{value}" if kind == "percent" else f"{head}{value // 100}OFF"


def _discount(c: Mapping[str, Any], category: str, subtotal: int) -> int:
    if c["expires"] < TODAY or (c["category"] and c["category"] != category) or subtotal < c["min_spend_cents"]:
        return 0
    return (subtotal * c["value"] + 50) // 100 if c["kind"] == "percent" else min(c["value"], subtotal)


class ShopTasks:
    """The generator for one catalog: ``generate(rng) -> (problem key, build(split) -> Task)``."""

    def __init__(self, *, system: str, prompt_suffix: str, catalog_seed: int, catalog_size: int,
                 fault_rate: float | None) -> None:
        self.system, self.suffix = system, prompt_suffix
        self.cat: Catalog = get_catalog(catalog_seed, catalog_size)
        self.fault_rate = fault_rate

    def __call__(self, rng: random.Random) -> tuple[str, Callable[[str], Task]]:
        for _ in range(200):
            out = self._attempt(rng)
            if out is not None:
                return out
        raise RuntimeError("shop: no solvable task after 200 draws; the catalog is too small")

    # ------------------------------------------------------------------ drawing
    def _attempt(self, rng: random.Random) -> tuple[str, Callable[[str], Task]] | None:
        cat = self.cat
        kind = rng.choices(SOCK_KINDS, cum_weights=_SOCK_CUM)[0] if rng.random() < 0.5 \
            else rng.choices(OTHER_KINDS, cum_weights=_OTHER_CUM)[0]
        rows = cat.rows[kind.name]
        anchor = rng.choice(rows)
        stocked = [v for v in anchor.variants if v.stock > 0]
        if not stocked:
            return None
        av = rng.choice(stocked)
        cons: dict[str, Any] = {}
        if len(kind.materials) > 1 and rng.random() < 0.6:
            cons["material"] = anchor.material
        if len(kind.sizes) > 1:
            cons["size"] = av.size
        if rng.random() < 0.75 or len(kind.sizes) == 1:
            cons["colour"] = av.colour
        if anchor.rating >= 3.5 and rng.random() < 0.45:
            cons["min_rating"] = max(3.0, math.floor(anchor.rating * 2) / 2)
        if rng.random() < 0.2:
            cons["brand"] = anchor.brand
        if rng.random() < 0.25:
            cons["max_ship_days"] = min(d for d in (2, 3, 5, 7, 10) if d >= anchor.ship_days)
        qty = rng.choice((1, 1, 1, 2, 2, 3) if kind.category in ("socks", "shirts") else (1, 1, 1, 2))
        matching, _ = _matching(rows, cons)
        buyable = sorted((v.price_cents, v.id, v.stock) for v in matching if v.stock >= qty)
        oos = min(rng.choice((0, 0, 1, 1, 2)), max(0, len(buyable) - 1))
        overrides = {m[1]: 0 for m in buyable[:oos]}
        buyable = buyable[oos:]
        if not buyable or (len(buyable) > 1 and buyable[0][0] == buyable[1][0]):
            return None
        return self._finish(rng, kind, cons, qty, buyable, overrides)

    def _finish(self, rng: random.Random, kind: Kind, cons: dict[str, Any], qty: int,
                buyable: list[tuple[int, str, int]], overrides: dict[str, int]) -> tuple[str, Callable[[str], Task]]:
        cat = self.cat
        price0 = buyable[0][0]
        sub0 = price0 * qty
        mode = rng.choice(("none", "none", "applies", "applies", "decoys", "applies+decoys"))
        coupons: list[dict[str, Any]] = []
        good = None
        if mode.startswith("applies"):
            ck = "fixed" if rng.random() < 0.4 and sub0 >= 1000 else "percent"
            value = rng.choice((10, 15, 20, 25)) if ck == "percent" else \
                rng.choice([x for x in (200, 300, 500, 1000) if x * 2 <= sub0])
            good = {"code": _coupon_code(rng, value, ck), "kind": ck, "value": value,
                    "min_spend_cents": rng.choice((0, sub0 * 8 // 10 // 500 * 500)),
                    "category": kind.category if rng.random() < 0.5 else None,
                    "expires": rng.choice(("2025-06-30", "2025-07-31", "2025-12-31"))}
            coupons.append(good)
        disc0 = _discount(good, kind.category, sub0) if good else 0
        total0 = sub0 - disc0
        slack = rng.choice((0.0, 0.03, 0.1, 0.25))
        budget = math.ceil(total0 * (1 + slack) / 100) * 100
        cands = []
        for i, (price, vid, _stock) in enumerate(buyable[:3]):
            sub = price * qty
            total = sub - (_discount(good, kind.category, sub) if good else 0)
            if total > budget:
                break
            nxt = buyable[i + 1][0] if i + 1 < len(buyable) else price + 10_000
            v = cat.variant(vid)
            cands.append({"variant_id": vid, "product_id": v["product_id"],
                          "title": cat.product(v["product_id"])["title"], "size": v["size"],
                          "colour": v["colour"], "unit_cents": price, "total_cents": total,
                          "bump_max": max(0, min(300, nxt - price - 1, (budget - total) // qty))})
        if mode.endswith("decoys"):
            top = max(c["unit_cents"] for c in cands) * qty
            for _ in range(rng.randint(1, 2)):
                dk = rng.choice(("expired", "category", "min_spend"))
                val = rng.choice((10, 15, 20))
                d = {"code": "", "kind": "percent", "value": val, "min_spend_cents": 0, "category": None,
                     "expires": "2025-12-31"}
                if dk == "expired":
                    d["expires"] = rng.choice(("2025-05-31", "2025-06-13", "2024-12-31"))
                elif dk == "category":
                    d["category"] = rng.choice([c for c in CATEGORIES if c != kind.category])
                else:
                    # above every candidate's subtotal, even after the largest price change
                    d["min_spend_cents"] = ((top + 300 * qty) // 500 + 1 + rng.randint(0, 4)) * 500
                d["code"] = _coupon_code(rng, val, "percent")
                if all(d["code"] != c["code"] for c in coupons):
                    coupons.append(d)
        rng.shuffle(coupons)
        account_seed = rng.randrange(1_000_000)
        acc = account_tables(account_seed)
        labels = {a["label"]: k for k, a in acc["addresses"].items() if a["label"] in ADDRESS_PHRASES}
        label = rng.choice(sorted(labels))
        valid_pm = sorted(k for k, p in acc["payment_methods"].items() if p["expires"] >= TODAY[:7])
        pay_phrase, pay_ids = "Any of my cards is fine.", valid_pm
        if rng.random() < 0.5:
            pm = rng.choice(valid_pm)
            rec = acc["payment_methods"][pm]
            pay_ids = [pm]
            pay_phrase = rng.choice((f"Pay with my {rec['nickname']} card.",
                                     f"Use my {rec['brand']} ending {rec['last4']}."))
        fault_rate = self.fault_rate if self.fault_rate is not None else rng.choice((0.0, 0.0, 0.0, 0.1, 0.2, 0.3))
        greeting = rng.choice(("Hi!", "Hello!", "Hey there.", ""))
        world = {"catalog_seed": cat.seed, "catalog_size": cat.size, "account_seed": account_seed,
                 "coupons": coupons, "stock": overrides, "fault_rate": fault_rate}
        data = {"candidates": cands, "quantity": qty, "address_id": labels[label], "address_label": label,
                "payment_ids": pay_ids, "budget_cents": budget, "coupon": good["code"] if good else None,
                "constraints": cons}
        lines = [f"{greeting} Please buy {unit_phrase(kind, qty)} for me.".strip()]
        lines += [f"- {line}" for line in self._constraint_lines(kind, cons)]
        lines.append("If several items meet all of this, buy the cheapest one (it must be in stock in the "
                     f"quantity I need). The whole order must cost at most {money(budget)}.")
        if coupons:
            codes = [c["code"] for c in coupons]
            lines.append(f"I have coupon code{'s' if len(codes) > 1 else ''} {' and '.join(codes)}; "
                         "use one if it applies to this order.")
        lines.append(f"Ship it to {ADDRESS_PHRASES[label]}. {pay_phrase}")
        prompt = "\n".join(lines) + self.suffix
        needs_coupon = bool(good) and budget < sub0

        def build(split: str) -> Task:  # the costlier knobs only for tasks of the asked split
            query = " ".join(x for x in (cons.get("material"), kind.name) if x)
            depth = cat.index.rank(query, cands[0]["product_id"])
            knobs = {
                "category": kind.category, "kind": kind.name, "n_constraints": len(cons), "quantity": qty,
                "distractors": _matching(cat.rows[kind.name], cons)[1], "depth": depth,
                "out_of_stock": len(overrides), "coupon": mode, "budget_slack": slack,
                "budget_needs_coupon": needs_coupon, "fault_rate": fault_rate, "candidates": len(cands),
                "difficulty": 1 + (len(cons) >= 4) + (depth > 10) + bool(overrides)
                + ("decoys" in mode or needs_coupon) + (fault_rate > 0),
            }
            return Task(split=split, prompt=prompt, system=self.system,
                        data=data, world=world, metadata=knobs)

        return f"{cat.seed}:{cat.size}:{cands[0]['product_id']}", build

    @staticmethod
    def _constraint_lines(kind: Kind, cons: Mapping[str, Any]) -> list[str]:
        out = []
        if "material" in cons:
            m = cons["material"]
            blends = any(BLEND_OF.get(x) == m for x in kind.materials)
            out.append(f"material: {m}" + (" (blends don't count)" if blends else ""))
        if "size" in cons:
            label = kind.size_label
            out.append(f"{label}: {cons['size']}" + (" (US)" if kind.category == "shoes" else ""))
        if "colour" in cons:
            out.append(f"colour: {cons['colour']}")
        if "min_rating" in cons:
            out.append(f"rated at least {cons['min_rating']} stars")
        if "brand" in cons:
            out.append(f"brand: {cons['brand']}")
        if "max_ship_days" in cons:
            out.append(f"ships within {cons['max_ship_days']} days")
        return out
