"""The written policy of Northwind Outfitters' support desk, and the machine rules behind it.

``POLICY`` is the document the agent reads (``read_policy``); :func:`decide` is the same policy as
code: given the world and what the customer asks for, it computes the outcome the policy
requires, the clauses involved and the gold write actions. Tasks store its result as their gold;
graders never trust the customer's claims, only the records (as the document tells the agent).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envfoundry import World

COMPANY = "Northwind Outfitters"
TODAY = _dt.date(2025, 6, 2)


@dataclass(frozen=True, slots=True)
class Tier:
    window: int  # days after delivery for change-of-mind refunds and exchanges
    defect_window: int  # days after delivery for defective items
    limit: float  # the most one agent may refund on their own


TIERS: dict[str, Tier] = {
    "standard": Tier(30, 60, 150.0),
    "gold": Tier(45, 90, 300.0),
    "platinum": Tier(60, 120, 500.0),
}

#: policy sections, in order; ``read_policy(section)`` returns one of them (or all)
SECTIONS: dict[str, str] = {
    "identity": """\
## 1. Identity (ID)
ID-1  Before changing anything on an account (refund, exchange, cancellation), verify the customer
      with verify_identity, using the email and ZIP code the customer gives you. Looking records up
      needs no verification. Opening, escalating or closing a ticket is not an account change.
ID-2  If the details do not match our records, make no account change: tell the customer you
      cannot proceed without verification and close the ticket as "denied".""",
    "tiers": """\
## 2. Account tiers (TI)
TI-1  tier      change-of-mind window   defective window   agent refund limit
      standard  30 days                 60 days            $150
      gold      45 days                 90 days            $300
      platinum  60 days                 120 days           $500
      Windows count days since delivery. The tier and dates in our records decide, never what the
      customer says about them.""",
    "refunds": """\
## 3. Refunds (RF)
RF-1  A delivered item may be refunded within the tier's window: the defective window when the
      customer reports it damaged or defective, the change-of-mind window otherwise. Later: deny.
RF-2  Final-sale items are refunded only when defective (within the defective window).
RF-3  Refund the item's price times its quantity, to the original payment (issue_refund does).
RF-4  A refund above the tier's agent refund limit must not be issued by you: escalate (ES-1).""",
    "exchanges": """\
## 4. Exchanges (EX)
EX-1  A delivered item may be exchanged for another size or colour of the same product within the
      window that would apply to a refund (RF-1).
EX-2  Final-sale items cannot be exchanged.
EX-3  The new variant must be in stock (list_variants); if it is not, deny the exchange.""",
    "cancellations": """\
## 5. Cancellations (CN)
CN-1  An order still "processing" may be cancelled (cancel_order refunds it in full; no limit).
CN-2  A "shipped" order may be cancelled only for platinum customers; otherwise deny.
CN-3  A delivered order cannot be cancelled (a refund or exchange may apply instead); deny.""",
    "escalation": """\
## 6. Escalation (ES)
ES-1  Refunds above your limit: escalate with reason "over_limit"; make no refund yourself.
ES-2  Accounts on fraud hold (shown by find_customer): make no change; escalate with reason
      "fraud_review", whatever the request.
ES-3  A customer asking for a manager is not by itself a reason to escalate.""",
    "conduct": """\
## 7. Conduct (CF, TK)
CF-1  Before a refund, exchange or cancellation, state exactly what you will do (item, amount) and
      get the customer's explicit yes.
CF-2  Tell the customer the decision and the reason for it; promise nothing the policy does not allow.
TK-1  End every conversation by closing the ticket (close_ticket) with the resolution "refunded",
      "exchanged", "cancelled" or "denied", or by escalating it (escalate).""",
}

POLICY = f"# {COMPANY}: customer support policy\n\n" + "\n\n".join(SECTIONS.values())

#: a short digest of the policy for a judge with a small context (the document itself is binding)
POLICY_BRIEF = """Policy summary (Northwind Outfitters support):
- Before any refund, exchange or cancellation: verify_identity must succeed, and the customer must say yes.
- If verification fails: change nothing, deny. Account on fraud hold: change nothing, escalate.
- Days since delivery allowed: standard 30 (60 if defective), gold 45 (90), platinum 60 (120). Later: deny.
- Final-sale items: refund only if defective; never exchange. Exchanges need the new variant in stock.
- Refund = price x quantity; above the limit (standard $150, gold $300, platinum $500): escalate, no refund.
- Cancel: processing orders yes; shipped orders only for platinum; delivered orders never.
- A customer asking for a manager is not a reason to escalate."""

RESOLUTIONS = ("refunded", "exchanged", "cancelled", "denied")
ESCALATION_REASONS = ("over_limit", "fraud_review", "other")
#: write tools that change an account (need ID-1 verification; CF-1 confirmation)
ACCOUNT_WRITES = ("issue_refund", "exchange_item", "cancel_order")


@dataclass(frozen=True, slots=True)
class Request:
    """What the customer wants: ``kind`` is refund, exchange or cancel."""

    kind: str
    order_id: str
    item_id: str | None = None
    reason: str | None = None  # "defective" | "changed_mind" (refunds and exchanges)
    new_sku: str | None = None  # exchanges
    verifiable: bool = True  # whether the customer's verification details match the records


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome the policy requires and the gold writes that carry it out."""

    outcome: str  # refund | exchange | cancel | deny | escalate
    clauses: tuple[str, ...]
    actions: tuple[tuple[str, dict[str, Any]], ...]
    why: str
    amount: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "clauses": list(self.clauses),
                "actions": [{"tool": t, "args": a} for t, a in self.actions],
                "why": self.why, "amount": self.amount}


def days_since(iso: str | None) -> int | None:
    return None if not iso else (TODAY - _dt.date.fromisoformat(iso)).days


def _get(world: World, table: str, key: str | None) -> Mapping[str, Any]:
    rec = world.get(table, key or "")
    if rec is None:
        raise KeyError(f"{table}[{key!r}] missing from the task world")
    return rec


def decide(world: World, req: Request, ticket_id: str) -> Decision:
    """The policy as code: the required outcome for ``req`` given the records in ``world``."""
    order = _get(world, "orders", req.order_id)
    cust = _get(world, "customers", order["customer_id"])
    tier = TIERS[cust["tier"]]

    def close(resolution: str) -> tuple[str, dict[str, Any]]:
        return ("close_ticket", {"ticket_id": ticket_id, "resolution": resolution})

    def deny(clauses: tuple[str, ...], why: str) -> Decision:
        return Decision("deny", clauses, (close("denied"),), why)

    if not req.verifiable:
        return deny(("ID-2",), "the verification details do not match our records")
    if cust["fraud_hold"]:
        return Decision("escalate", ("ES-2",),
                        (("escalate", {"ticket_id": ticket_id, "reason": "fraud_review"}),),
                        "the account is on fraud hold")
    if req.kind == "cancel":
        status = order["status"]
        if status == "processing":
            return Decision("cancel", ("CN-1", "CF-1"),
                            (("cancel_order", {"order_id": req.order_id}), close("cancelled")),
                            "the order is still processing", amount=float(order["total"]))
        if status == "shipped":
            if cust["tier"] == "platinum":
                return Decision("cancel", ("CN-2", "CF-1"),
                                (("cancel_order", {"order_id": req.order_id}), close("cancelled")),
                                "shipped, but platinum customers may cancel shipped orders",
                                amount=float(order["total"]))
            return deny(("CN-2",), f"the order has shipped and the customer is {cust['tier']}, not platinum")
        return deny(("CN-3",), "the order was delivered; delivered orders cannot be cancelled")

    item = _get(world, "items", req.item_id)
    age = days_since(order["delivered_on"])
    if age is None:
        return deny(("RF-1",) if req.kind == "refund" else ("EX-1",), "the order has not been delivered")
    defective = req.reason == "defective"
    window = tier.defect_window if defective else tier.window
    win_kind = "defective" if defective else "change-of-mind"
    if req.kind == "exchange":
        if item["final_sale"]:
            return deny(("EX-2",), "final-sale items cannot be exchanged")
        if age > window:
            return deny(("EX-1", "TI-1"), f"delivered {age} days ago, past the {window}-day {win_kind} window")
        new = world.get("skus", req.new_sku or "")
        old = _get(world, "skus", item["sku"])
        if new is None or new["product"] != old["product"] or int(new["stock"]) <= 0:
            return deny(("EX-3",), "the requested variant is out of stock")
        return Decision("exchange", ("EX-1", "EX-3", "CF-1"),
                        (("exchange_item", {"order_id": req.order_id, "item_id": req.item_id,
                                            "new_sku": req.new_sku}), close("exchanged")),
                        f"delivered {age} days ago, within the {window}-day {win_kind} window, in stock")
    # refund
    if item["final_sale"] and not defective:
        return deny(("RF-2",), "final-sale items are refunded only when defective")
    if age > window:
        return deny(("RF-1", "TI-1"), f"delivered {age} days ago, past the {window}-day {win_kind} window")
    amount = round(float(item["price"]) * int(item["qty"]), 2)
    if amount > tier.limit:
        return Decision("escalate", ("RF-4", "ES-1"),
                        (("escalate", {"ticket_id": ticket_id, "reason": "over_limit"}),),
                        f"${amount:.2f} is above the {cust['tier']} agent limit of ${tier.limit:.0f}",
                        amount=amount)
    clauses = ("RF-1", "RF-3", "CF-1") + (("RF-2",) if item["final_sale"] else ())
    return Decision("refund", clauses,
                    (("issue_refund", {"order_id": req.order_id, "item_id": req.item_id, "amount": amount}),
                     close("refunded")),
                    f"delivered {age} days ago, within the {window}-day {win_kind} window; "
                    f"${amount:.2f} is within the limit", amount=amount)


def policy_section(section: str) -> str:
    """One section of the document, or all of it (``"all"``)."""
    if section == "all":
        return POLICY
    if section not in SECTIONS:
        raise KeyError(section)
    return SECTIONS[section]
