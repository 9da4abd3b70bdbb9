"""The support world (customers, orders, items, SKUs, payments, refunds, tickets, escalations) and
the write operations on it.

The operations enforce only what the systems themselves enforce (records exist, amounts fit, an
item is refunded once); what the *policy* allows is for the agent to follow and for the graders to
check (:mod:`.policy`). Tools and the graders' gold replay share these functions, so the gold
world is exactly what a correct agent's tool calls produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envfoundry import ToolError, World

from .policy import ESCALATION_REASONS, RESOLUTIONS, days_since

TABLES = ("customers", "orders", "items", "skus", "payments", "refunds", "tickets", "escalations")


def build_world(tables: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> World:
    """The initial world of a task from its stored snapshot (``task.world["tables"]``)."""
    return World({t: dict(tables.get(t, {})) for t in TABLES})


def _need(world: World, table: str, key: str, what: str) -> Mapping[str, Any]:
    rec = world.get(table, key) if isinstance(key, str) and key else None
    if rec is None:
        raise ToolError(f"no {what} {key!r}")
    return rec


def _next_key(world: World, table: str, prefix: str) -> str:
    return f"{prefix}-{world.count(table) + 1}"


def _open_ticket(world: World, ticket_id: str) -> Mapping[str, Any]:
    t = _need(world, "tickets", ticket_id, "ticket")
    if t["status"] != "open":
        raise ToolError(f"ticket {ticket_id} is already {t['status']}")
    return t


def _money(amount: float) -> float:
    return round(float(amount) + 0.0, 2)


# ------------------------------------------------------------------------------------- reads
def customer_view(world: World, customer_id: str) -> dict[str, Any]:
    c = world.get("customers", customer_id)
    assert c is not None
    orders = [k for k, o in world.rows("orders") if o["customer_id"] == customer_id]
    return {"customer_id": customer_id, "name": c["name"], "tier": c["tier"],
            "fraud_hold": c["fraud_hold"], "orders": orders}


def order_view(world: World, order_id: str) -> dict[str, Any]:
    o = _need(world, "orders", order_id, "order")
    pay = world.get("payments", o["payment_id"]) or {}
    items = []
    for k, it in world.rows("items"):
        if it["order_id"] == order_id:
            sku = world.get("skus", it["sku"]) or {}
            items.append({"item_id": k, "name": it["name"], "sku": it["sku"], "size": sku.get("size"),
                          "color": sku.get("color"), "price": it["price"], "qty": it["qty"],
                          "final_sale": it["final_sale"], "status": it["status"]})
    return {"order_id": order_id, "customer_id": o["customer_id"], "status": o["status"],
            "placed_on": o["placed_on"], "delivered_on": o["delivered_on"],
            "days_since_delivery": days_since(o["delivered_on"]), "total": o["total"],
            "payment": {"method": pay.get("method"), "amount": pay.get("amount"), "refunded": pay.get("refunded")},
            "items": items}


def variants_view(world: World, sku: str) -> dict[str, Any]:
    s = _need(world, "skus", sku, "SKU")
    out = [{"sku": k, "size": v["size"], "color": v["color"], "price": v["price"], "stock": v["stock"]}
           for k, v in world.rows("skus") if v["product"] == s["product"]]
    return {"product": s["product"], "name": s["name"], "variants": out}


def find_customer_id(world: World, email: str) -> str:
    e = email.strip().lower()
    for k, c in world.rows("customers"):
        if c["email"].lower() == e:
            return k
    raise ToolError(f"no customer with email {email!r}")


def check_identity(world: World, customer_id: str, email: str, zip_code: str) -> None:
    c = _need(world, "customers", customer_id, "customer")
    if c["email"].lower() != email.strip().lower() or c["zip"] != zip_code.strip():
        raise ToolError("verification failed: the email and ZIP code do not match our records for "
                        f"customer {customer_id}")


# ------------------------------------------------------------------------------------ writes
def issue_refund(world: World, order_id: str, item_id: str, amount: float) -> str:
    o = _need(world, "orders", order_id, "order")
    it = _need(world, "items", item_id, "item")
    if it["order_id"] != order_id:
        raise ToolError(f"item {item_id} is not part of order {order_id}")
    if o["status"] != "delivered":
        raise ToolError(f"order {order_id} is {o['status']}, not delivered; only delivered items can be refunded")
    if it["status"] != "delivered":
        raise ToolError(f"item {item_id} is {it['status']}; it cannot be refunded")
    amt = _money(amount)
    cap = _money(float(it["price"]) * int(it["qty"]))
    if not 0 < amt <= cap:
        raise ToolError(f"amount must be more than 0 and at most the item's total ${cap:.2f}, got {amount}")
    pay = _need(world, "payments", o["payment_id"], "payment")
    key = _next_key(world, "refunds", "RFD")
    world.insert("refunds", key, {"order_id": order_id, "item_id": item_id, "payment_id": o["payment_id"],
                                  "amount": amt})
    world.update("items", item_id, status="refunded")
    world.update("payments", o["payment_id"], refunded=_money(float(pay["refunded"]) + amt))
    return f"refund {key} of ${amt:.2f} issued to {pay['method']}"


def exchange_item(world: World, order_id: str, item_id: str, new_sku: str) -> str:
    o = _need(world, "orders", order_id, "order")
    it = _need(world, "items", item_id, "item")
    if it["order_id"] != order_id:
        raise ToolError(f"item {item_id} is not part of order {order_id}")
    if o["status"] != "delivered" or it["status"] != "delivered":
        raise ToolError(f"item {item_id} is not a delivered item; it cannot be exchanged")
    new = _need(world, "skus", new_sku, "SKU")
    old = _need(world, "skus", it["sku"], "SKU")
    if new["product"] != old["product"] or new_sku == it["sku"]:
        raise ToolError(f"{new_sku} is not another variant of {old['name']}")
    if int(new["stock"]) <= 0:
        raise ToolError(f"{new_sku} is out of stock")
    world.update("skus", new_sku, stock=int(new["stock"]) - 1)
    world.update("items", item_id, status="exchange_requested", exchange_sku=new_sku)
    return f"exchange of {item_id} for {new_sku} ({new['size']}, {new['color']}) requested; a prepaid label was sent"


def cancel_order(world: World, order_id: str) -> str:
    o = _need(world, "orders", order_id, "order")
    if o["status"] not in ("processing", "shipped"):
        raise ToolError(f"order {order_id} is {o['status']}; only processing or shipped orders can be cancelled")
    pay = _need(world, "payments", o["payment_id"], "payment")
    world.update("orders", order_id, status="cancelled")
    world.update("payments", o["payment_id"], refunded=_money(pay["amount"]))
    return f"order {order_id} cancelled; ${float(pay['amount']):.2f} refunded to {pay['method']}"


def escalate(world: World, ticket_id: str, reason: str, note: str = "") -> str:
    _open_ticket(world, ticket_id)
    if reason not in ESCALATION_REASONS:
        raise ToolError(f"reason must be one of {', '.join(ESCALATION_REASONS)}, got {reason!r}")
    key = _next_key(world, "escalations", "ESC")
    world.insert("escalations", key, {"ticket_id": ticket_id, "reason": reason, "note": note[:500]})
    world.update("tickets", ticket_id, status="escalated")
    return f"ticket {ticket_id} escalated to a supervisor ({key}, reason {reason})"


def close_ticket(world: World, ticket_id: str, resolution: str, note: str = "") -> str:
    _open_ticket(world, ticket_id)
    if resolution not in RESOLUTIONS:
        raise ToolError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    world.update("tickets", ticket_id, status="closed", resolution=resolution, note=note[:500])
    return f"ticket {ticket_id} closed as {resolution}"


WRITE_OPS = {"issue_refund": issue_refund, "exchange_item": exchange_item, "cancel_order": cancel_order,
             "escalate": escalate, "close_ticket": close_ticket}


def apply_actions(world: World, actions: list[dict[str, Any]]) -> World:
    """A fork of ``world`` with the gold ``actions`` ({"tool", "args"}) applied."""
    w = world.fork()
    for a in actions:
        WRITE_OPS[a["tool"]](w, **a["args"])
    return w
