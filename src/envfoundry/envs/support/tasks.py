"""Procedural support tickets: a world, a customer with a persona and a request, and the gold
outcome computed from the policy (:func:`.policy.decide`).

Each task is a pure function of a seeded RNG. The scenario is steered by a *twist* (a final-sale
item, an old order, an amount over the limit, a fraud hold, ...) so that refusals and escalations
are common, but the gold always comes from the machine rules, never from the twist.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from envfoundry import Task

from .policy import TIERS, TODAY, Request, days_since, decide
from .world import build_world

NAME = "support"
VERSION = "1.1.0"
PERSONAS = ("cooperative", "vague", "pushy", "liar")
KINDS = ("refund", "exchange", "cancel")
#: scenario twists per request kind (repeats are weights: about 40% approvals, 40% refusals, 20% escalations)
TWISTS: dict[str, tuple[str, ...]] = {
    "refund": ("ok_changed", "ok_changed", "ok_defective", "ok_defective", "ok_final_defective", "final_sale",
               "window", "over_limit", "over_limit", "fraud"),
    "exchange": ("ok", "ok", "ok", "final_sale", "window", "out_of_stock", "fraud"),
    "cancel": ("processing", "processing", "shipped_platinum", "shipped", "delivered", "fraud"),
}

# code, name, price, sizes, colours
PRODUCTS: tuple[tuple[str, str, float, tuple[str, ...], tuple[str, ...]], ...] = (
    ("TJK", "Trail Jacket", 189.0, ("S", "M", "L", "XL"), ("blue", "black")),
    ("RBT", "Ridge Boots", 149.0, ("41", "42", "43", "44"), ("brown",)),
    ("MTE", "Merino Tee", 39.5, ("S", "M", "L"), ("grey", "green")),
    ("DPK", "Day Pack 20L", 79.0, ("one size",), ("red", "black")),
    ("FLC", "Fleece Pullover", 69.0, ("S", "M", "L"), ("navy", "sand")),
    ("TNT", "Summit Tent 2P", 349.0, ("one size",), ("orange",)),
    ("SLB", "Down Sleeping Bag", 229.0, ("regular", "long"), ("navy",)),
    ("SCK", "Hiking Socks 3-pack", 18.0, ("S", "M", "L"), ("grey",)),
    ("RSP", "Rain Shell Pants", 99.0, ("S", "M", "L"), ("black", "olive")),
    ("GLV", "Insulated Gloves", 45.0, ("S", "M", "L"), ("black",)),
)
FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Luca",
         "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yusuf")
LAST = ("Ruiz", "Okafor", "Novak", "Sato", "Berg", "Haddad", "Kowalski", "Lindqvist", "Mensah", "Moreau",
        "Patel", "Quintero", "Rossi", "Schmidt", "Tanaka", "Varga", "Weber", "Young", "Zhou", "Ivanova")

SYSTEM = """You are a customer support agent for Northwind Outfitters, chatting with a customer \
about ticket {ticket}. The company policy is binding: read it with read_policy before deciding \
anything. Use the tools to look up records and make changes. Anything you write without a tool \
call is sent to the customer. Verify identity before any account change, get the customer's \
explicit yes before a refund, exchange or cancellation, and finish by closing or escalating the \
ticket."""


def _sku_key(code: str, size: str, color: str) -> str:
    return f"{code}-{size.replace(' ', '').upper()[:3]}-{color[:3].upper()}"


def _catalog(rng: random.Random) -> dict[str, dict[str, Any]]:
    skus: dict[str, dict[str, Any]] = {}
    for code, name, price, sizes, colors in PRODUCTS:
        for s in sizes:
            for c in colors:
                skus[_sku_key(code, s, c)] = {"product": code, "name": name, "size": s, "color": c,
                                              "price": price, "stock": rng.randint(1, 9)}
    return skus


def _ids(rng: random.Random, prefix: str, digits: int, n: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        k = f"{prefix}-{rng.randrange(10 ** (digits - 1), 10 ** digits)}"
        if k not in taken:
            taken.add(k)
            out.append(k)
    return out


class _Builder:
    """Accumulates the tables of one task world."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.taken: set[str] = set()
        self.t: dict[str, dict[str, dict[str, Any]]] = {
            "customers": {}, "orders": {}, "items": {}, "skus": _catalog(rng), "payments": {},
            "refunds": {}, "tickets": {}, "escalations": {}}

    def customer(self, tier: str, fraud: bool = False) -> str:
        rng = self.rng
        while True:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}{rng.randint(1, 99)}@example.com".lower()
            if all(c["email"] != email for c in self.t["customers"].values()):
                break
        cid = _ids(rng, "C", 4, 1, self.taken)[0]
        self.t["customers"][cid] = {"name": f"{first} {last}", "email": email,
                                    "zip": f"{rng.randint(10000, 99999)}", "tier": tier, "fraud_hold": fraud}
        return cid

    def order(self, cid: str, lines: list[tuple[str, int, bool]], status: str,
              age: int | None) -> tuple[str, list[str]]:
        """An order of (sku, qty, final_sale) lines; ``age`` days since delivery (delivered only)."""
        rng = self.rng
        oid = _ids(rng, "O", 5, 1, self.taken)[0]
        pid = _ids(rng, "P", 5, 1, self.taken)[0]
        delivered = (TODAY - timedelta(days=age)).isoformat() if status == "delivered" and age is not None else None
        placed_age = (age or 0) + rng.randint(2, 6) if status == "delivered" else rng.randint(0, 3)
        item_ids = _ids(rng, "I", 6, len(lines), self.taken)
        total = 0.0
        for iid, (sku, qty, final) in zip(item_ids, lines, strict=True):
            s = self.t["skus"][sku]
            self.t["items"][iid] = {"order_id": oid, "sku": sku, "name": s["name"], "price": s["price"], "qty": qty,
                                    "final_sale": final, "status": "delivered" if status == "delivered" else status}
            total += s["price"] * qty
        total = round(total, 2)
        card = f"{rng.choice(('Visa', 'Mastercard', 'Amex'))} ending {rng.randint(1000, 9999)}"
        self.t["orders"][oid] = {"customer_id": cid, "status": status,
                                 "placed_on": (TODAY - timedelta(days=placed_age)).isoformat(),
                                 "delivered_on": delivered, "payment_id": pid, "total": total}
        self.t["payments"][pid] = {"order_id": oid, "method": card, "amount": total, "refunded": 0.0}
        return oid, item_ids

    def random_lines(self, n: int) -> list[tuple[str, int, bool]]:
        skus = sorted(self.t["skus"])
        return [(self.rng.choice(skus), self.rng.randint(1, 2), self.rng.random() < 0.15) for _ in range(n)]

    def filler_order(self, cid: str) -> None:
        rng = self.rng
        status = rng.choice(("delivered", "delivered", "shipped", "processing"))
        self.order(cid, self.random_lines(rng.randint(1, 2)), status, rng.randint(3, 150))


def _pick_sku(b: _Builder, *, multi: bool = False, max_total: float | None = None,
              min_total: float | None = None) -> tuple[str, int]:
    rng = b.rng
    for _ in range(200):
        sku = rng.choice(sorted(b.t["skus"]))
        s = b.t["skus"][sku]
        if multi and sum(1 for v in b.t["skus"].values() if v["product"] == s["product"]) < 2:
            continue
        qty = rng.randint(1, 2) if s["price"] < 100 else 1
        if min_total is not None and s["price"] * qty <= min_total:
            qty = int(min_total // s["price"]) + 1
            if qty > 3:
                continue
        total = s["price"] * qty
        if (max_total is None or total <= max_total) and (min_total is None or total > min_total):
            return sku, qty
    raise AssertionError("no SKU fits")  # pragma: no cover - the catalogue always has one


def _scenario(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(KINDS + ("refund",))  # refunds twice as likely
    persona = rng.choice(PERSONAS)
    twist = rng.choice(TWISTS[kind])
    lie: str | None = None
    if persona == "liar":
        lie = rng.choice(("identity", "story"))
        if lie == "story":
            twist = "shipped" if kind == "cancel" else "window"
    tier = rng.choice(tuple(TIERS))
    if twist == "shipped_platinum":
        tier = "platinum"
    elif twist == "shipped" or (lie == "story" and kind != "cancel" and rng.random() < 0.5):
        tier = rng.choice(("standard", "gold"))
    return {"kind": kind, "persona": persona, "twist": twist, "lie": lie, "tier": tier}


def _target(b: _Builder, sc: dict[str, Any], cid: str) -> dict[str, Any]:
    """The order (and item) the request is about, shaped by the twist."""
    rng, kind, twist, tier = b.rng, sc["kind"], sc["twist"], TIERS[sc["tier"]]
    reason = None
    if kind == "cancel":
        status = {"processing": "processing", "shipped_platinum": "shipped", "shipped": "shipped",
                  "delivered": "delivered"}.get(twist, rng.choice(("processing", "shipped")))
        oid, iids = b.order(cid, b.random_lines(rng.randint(1, 3)), status, rng.randint(2, 40))
        return {"order_id": oid, "item_id": None, "reason": None, "new_sku": None}
    if kind == "refund":
        reason = {"ok_changed": "changed_mind", "ok_defective": "defective", "ok_final_defective": "defective",
                  "final_sale": "changed_mind"}.get(twist, rng.choice(("defective", "changed_mind")))
    else:
        reason = rng.choice(("changed_mind", "changed_mind", "defective"))
    window = tier.defect_window if reason == "defective" else tier.window
    if twist == "over_limit":
        sku, qty = _pick_sku(b, min_total=tier.limit)
    else:
        sku, qty = _pick_sku(b, multi=kind == "exchange", max_total=tier.limit)
    if twist == "window":
        age = rng.randint(window + 1, window + 45)
    elif twist == "ok_defective":
        age = rng.randint(max(1, tier.window - 10), window)
    else:
        age = rng.randint(1, window)
    final = twist in ("final_sale", "ok_final_defective")
    lines = [(sku, qty, final)] + b.random_lines(rng.randint(0, 2))
    oid, iids = b.order(cid, lines, "delivered", age)
    new_sku = None
    if kind == "exchange":
        s = b.t["skus"][sku]
        others = sorted(k for k, v in b.t["skus"].items() if v["product"] == s["product"] and k != sku)
        new_sku = rng.choice(others)
        if twist == "out_of_stock":
            b.t["skus"][new_sku]["stock"] = 0
    return {"order_id": oid, "item_id": iids[0], "reason": reason, "new_sku": new_sku}


_REQ = {
    "refund": "I'd like a refund for the {item}",
    "exchange": "I'd like to exchange the {item} for {variant}",
    "cancel": "I'd like to cancel my order",
}
_REASONS = {
    "defective": ("It arrived damaged.", "The zip broke the first time I used it.", "It has a tear in the seam."),
    "changed_mind": ("It just isn't right for me.", "I changed my mind about it.", "It doesn't fit the way I hoped."),
}


def _facts(b: _Builder, sc: dict[str, Any], cid: str, tgt: dict[str, Any]) -> dict[str, Any]:
    """What the customer knows and says (a liar's false claims included)."""
    rng, c = b.rng, b.t["customers"][cid]
    item = variant = None
    if tgt["item_id"]:
        it = b.t["items"][tgt["item_id"]]
        s = b.t["skus"][it["sku"]]
        item = f"{it['name']} ({s['size']}, {s['color']})" if s["size"] != "one size" else \
            f"{it['name']} ({s['color']})"
    if tgt["new_sku"]:
        n = b.t["skus"][tgt["new_sku"]]
        variant = f"size {n['size']} in {n['color']}" if n["size"] != "one size" else f"the {n['color']} one"
    zip_code = c["zip"]
    claim = None
    if sc["lie"] == "identity":
        zip_code = f"{(int(c['zip']) + rng.randint(1, 999)) % 90000 + 10000}"
    elif sc["lie"] == "story":
        if sc["kind"] == "cancel" or (c["tier"] != "platinum" and rng.random() < 0.5):
            claim = "I'm a platinum member, by the way."
        else:
            claim = f"I only got it {rng.randint(3, 9)} days ago."
    req = _REQ[sc["kind"]].format(item=item, variant=variant)
    return {"name": c["name"], "email": c["email"], "zip": zip_code, "order_id": tgt["order_id"], "item": item,
            "variant": variant, "reason": rng.choice(_REASONS[tgt["reason"]]) if tgt["reason"] else None,
            "request": req, "claim": claim}


def _opening(rng: random.Random, persona: str, f: dict[str, Any]) -> str:
    if persona == "vague":
        return rng.choice(("Hi, I have a problem with something I ordered.", "Hello, I need some help with an order.",
                           "hi. something is wrong with my order"))
    req = f"{f['request']} from order {f['order_id']}." if f["item"] else f"{f['request']} {f['order_id']}."
    parts = [req] + ([f["reason"]] if f["reason"] else []) + ([f["claim"]] if f["claim"] else [])
    if persona == "pushy":
        return " ".join([rng.choice(("I need this sorted today.", "This is the second time I'm contacting you."))]
                        + parts + [rng.choice(("Don't make me wait.", "Just get it done."))])
    return " ".join([f"Hi, this is {f['name']}."] + parts)


def _difficulty(sc: dict[str, Any], outcome: str, clauses: tuple[str, ...]) -> int:
    return (1 + (sc["persona"] != "cooperative") + (outcome in ("deny", "escalate")) + (sc["lie"] is not None)
            + (len(clauses) > 3 or sc["twist"] in ("ok_defective", "ok_final_defective", "shipped_platinum")))


def generate(rng: random.Random) -> tuple[str, Callable[[str], Task]]:
    """One task: (problem key, build(split) -> Task)."""
    sc = _scenario(rng)
    b = _Builder(rng)
    cid = b.customer(sc["tier"], fraud=sc["twist"] == "fraud")
    tgt = _target(b, sc, cid)
    for _ in range(rng.randint(0, 2)):
        b.filler_order(cid)
    for _ in range(rng.randint(3, 5)):
        other = b.customer(rng.choice(tuple(TIERS)), fraud=rng.random() < 0.1)
        for _ in range(rng.randint(1, 2)):
            b.filler_order(other)
    ticket = _ids(rng, "T", 5, 1, b.taken)[0]
    b.t["tickets"][ticket] = {"channel": "chat", "status": "open", "resolution": None, "note": ""}
    facts = _facts(b, sc, cid, tgt)
    req = Request(sc["kind"], tgt["order_id"], tgt["item_id"], tgt["reason"], tgt["new_sku"],
                  verifiable=sc["lie"] != "identity")
    dec = decide(build_world(b.t), req, ticket)
    prompt = _opening(rng, sc["persona"], facts)
    order = b.t["orders"][tgt["order_id"]]
    meta = {
        "persona": sc["persona"], "request": sc["kind"], "twist": sc["twist"], "lie": sc["lie"],
        "outcome": dec.outcome, "clauses": list(dec.clauses), "needs_escalation": dec.outcome == "escalate",
        "tier": sc["tier"], "order_status": order["status"], "order_age_days": days_since(order["delivered_on"]),
        "reason": tgt["reason"], "amount": dec.amount,
    }
    meta["difficulty"] = _difficulty(sc, dec.outcome, dec.clauses)
    data = {"ticket_id": ticket, "customer_id": cid, "persona": sc["persona"], "facts": facts,
            "request": {"kind": req.kind, "order_id": req.order_id, "item_id": req.item_id, "reason": req.reason,
                        "new_sku": req.new_sku, "verifiable": req.verifiable},
            "gold": dec.to_dict()}
    key = f"{ticket}:{cid}:{tgt['order_id']}:{sc['kind']}:{sc['twist']}:{sc['persona']}"
    tables = b.t
    return key, lambda split: Task(
        split=split, system=SYSTEM.format(ticket=ticket), prompt=prompt,
        data=data, world={"tables": tables}, metadata=meta)
