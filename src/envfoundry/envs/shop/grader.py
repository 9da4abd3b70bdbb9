"""The shop's grader: a state-diff spec built from the task's gold purchase.

Required: exactly one new ``orders`` record holding only the gold variant in the asked quantity,
shipped to the asked address, paid with an allowed card, total within the budget, with the coupon
that applies (or none when none applies). The gold variant is the cheapest candidate that did not
sell out during the episode (a sold-out fault is recorded in the ``events`` table by the shop).

Allowed (reported, harmless): ``variants.stock`` and ``variants.price_cents`` (purchases and the
shop's own price changes). Ignored: ``sessions`` (the applied coupon) and ``events``. Everything
else is collateral: a second order, items left in the cart, a new or changed address, ...

Partial credit (capped at 0.5, see :mod:`envfoundry.grading.state_diff`): the order's predicates
weigh items 4, address, payment, total and coupon 1 each; each collateral record removes a quarter.
"""

from __future__ import annotations

from envfoundry import (
    ChangePattern,
    GradeInput,
    Insert,
    StateDiffGrader,
    StateDiffSpec,
    eq,
    le,
    one_of,
    same_records,
)

ALLOW = (ChangePattern("variants", field="stock"), ChangePattern("variants", field="price_cents"))
IGNORE = (ChangePattern("sessions"), ChangePattern("events"))


def gold_candidate(g: GradeInput) -> dict:
    """The task's answer given what sold out during the episode."""
    assert g.world_after is not None
    sold = {e["variant_id"] for _, e in g.world_after.rows("events") if e["type"] == "sold_out"}
    cands = g.task.data["candidates"]
    return next((c for c in cands if c["variant_id"] not in sold), cands[-1])


def spec(g: GradeInput) -> StateDiffSpec:
    d = g.task.data
    gold = gold_candidate(g)
    order = Insert("orders", name="the purchase", where={
        "items": same_records([{"variant_id": gold["variant_id"], "quantity": d["quantity"]}],
                              on=("variant_id", "quantity")),
        "address_id": eq(d["address_id"]),
        "payment_id": one_of(*d["payment_ids"]),
        "total_cents": le(d["budget_cents"]),
        "coupon": eq(d["coupon"]),
    }, weights={"items": 4.0})
    return StateDiffSpec(require=[order], allow=ALLOW, ignore=IGNORE, partial_cap=0.5, collateral_penalty=0.25)


grader = StateDiffGrader(spec, name="purchase")
