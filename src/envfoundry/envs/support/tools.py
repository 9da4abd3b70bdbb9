"""The support agent's tools: read the policy, look records up, verify identity, change orders,
escalate and close the ticket. Writing to the customer is not a tool: an answer without a tool
call goes to the customer (the environment's ``reply`` hook)."""

from __future__ import annotations

from typing import Literal

from envfoundry import Episode, ToolError, tool

from . import world as ops
from .policy import SECTIONS, policy_section

Section = Literal["all", "identity", "tiers", "refunds", "exchanges", "cancellations", "escalation", "conduct"]
assert set(Section.__args__) == {"all", *SECTIONS}  # type: ignore[attr-defined]


def _w(ep: Episode) -> ops.World:
    assert ep.world is not None
    return ep.world


@tool
def read_policy(ep: Episode, section: Section = "all") -> str:
    """Read the company support policy (all of it, or one section)."""
    return policy_section(section)


@tool
def find_customer(ep: Episode, email: str) -> dict:
    """Look a customer up by email: id, name, tier, fraud hold and order ids."""
    w = _w(ep)
    return ops.customer_view(w, ops.find_customer_id(w, email))


@tool
def verify_identity(ep: Episode, customer_id: str, email: str, zip_code: str) -> str:
    """Check the email and ZIP code the customer gave against the records of `customer_id`."""
    ops.check_identity(_w(ep), customer_id, email, zip_code)
    return f"verified: customer {customer_id}"


@tool
def get_order(ep: Episode, order_id: str) -> dict:
    """An order: status, dates, days since delivery, payment and items (with final-sale flags)."""
    return ops.order_view(_w(ep), order_id.strip())


@tool
def list_variants(ep: Episode, sku: str) -> dict:
    """All variants (size, colour, stock) of the product that `sku` belongs to."""
    return ops.variants_view(_w(ep), sku.strip())


@tool(writes=True)
def issue_refund(ep: Episode, order_id: str, item_id: str, amount: float) -> str:
    """Refund `amount` for one item of a delivered order to the original payment method. Irreversible."""
    return ops.issue_refund(_w(ep), order_id.strip(), item_id.strip(), amount)


@tool(writes=True)
def exchange_item(ep: Episode, order_id: str, item_id: str, new_sku: str) -> str:
    """Exchange a delivered item for another variant (`new_sku`) of the same product. Irreversible."""
    return ops.exchange_item(_w(ep), order_id.strip(), item_id.strip(), new_sku.strip())


@tool(writes=True)
def cancel_order(ep: Episode, order_id: str) -> str:
    """Cancel an order that has not been delivered and refund it in full. Irreversible."""
    return ops.cancel_order(_w(ep), order_id.strip())


@tool(writes=True)
def escalate(ep: Episode, ticket_id: str, reason: Literal["over_limit", "fraud_review", "other"],
             note: str = "") -> str:
    """Hand the ticket to a supervisor (this ends your part of the ticket)."""
    return ops.escalate(_w(ep), ticket_id.strip(), reason, note)


@tool(writes=True)
def close_ticket(ep: Episode, ticket_id: str, resolution: Literal["refunded", "exchanged", "cancelled", "denied"],
                 note: str = "") -> str:
    """Close the ticket with its resolution."""
    return ops.close_ticket(_w(ep), ticket_id.strip(), resolution, note)


TOOLS = [read_policy, find_customer, verify_identity, get_order, list_variants, issue_refund, exchange_item,
         cancel_order, escalate, close_ticket]

__all__ = ["TOOLS", "ToolError"]
