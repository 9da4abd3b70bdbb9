"""The reference solution and scripted agents of varying correctness.

:func:`plan` lays out one agent turn per step: ask the customer for the facts, look the customer
up, verify, read the order and the policy, then carry out the decision the policy requires
(stored as the task's private ``gold``), asking for a yes before an irreversible change. The
oracle is ``plan(task, "oracle")``: it uses what the agent sees plus the task's solution, nothing
else. The other variants make one kind of mistake each; ``make_labels`` uses them to produce
transcripts whose correctness is known by construction.
"""

from __future__ import annotations

from typing import Any

from envfoundry import Episode, Message, PolicyOutput, Task, ToolCall, Usage

#: scripted agents: the oracle and one deliberate mistake each
VARIANTS = ("oracle", "no_verify", "no_confirm", "approve_all", "deny_all", "escalate_all", "wrong_amount",
            "silent")
_SECTION = {"refund": "refunds", "exchange": "exchanges", "cancel": "cancellations"}
_DONE = {"refund": "refunded", "exchange": "exchanged", "cancel": "cancelled"}


def _say(text: str) -> Message:
    return Message("assistant", text)


def _call(name: str, **args: Any) -> Message:
    return Message("assistant", "", [ToolCall(name, args)])


def _requested_actions(task: Task) -> tuple[str, dict[str, Any], float | None]:
    """The write the customer asked for, whatever the policy says: (tool, args, amount)."""
    d = task.data
    r = d["request"]
    tables = task.world["tables"] if task.world else {}
    if r["kind"] == "refund":
        it = tables["items"][r["item_id"]]
        amount = round(float(it["price"]) * int(it["qty"]), 2)
        return "issue_refund", {"order_id": r["order_id"], "item_id": r["item_id"], "amount": amount}, amount
    if r["kind"] == "exchange":
        return "exchange_item", {"order_id": r["order_id"], "item_id": r["item_id"], "new_sku": r["new_sku"]}, None
    return "cancel_order", {"order_id": r["order_id"]}, float(tables["orders"][r["order_id"]]["total"])


def _confirm_text(task: Task, amount: float | None) -> str:
    f, kind = task.data["facts"], task.data["request"]["kind"]
    if kind == "refund":
        return (f"Thank you, you're verified. Under our policy I can refund the {f['item']} (${amount:.2f}) to your "
                "original payment method. Shall I go ahead with the refund?")
    if kind == "exchange":
        return f"Thank you, you're verified. I can exchange your {f['item']} for {f['variant']}. Shall I go ahead?"
    return (f"Thank you, you're verified. I can cancel order {f['order_id']} and refund ${amount:.2f} to your "
            "original payment method. Shall I go ahead and cancel it?")


def plan(task: Task, variant: str = "oracle") -> list[Message]:
    """The agent turns of ``variant`` on ``task`` (one message per turn)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown scripted support agent {variant!r} (choose from {', '.join(VARIANTS)})")
    d = task.data
    f, r, gold, tid = d["facts"], d["request"], d["gold"], d["ticket_id"]
    tables = task.world["tables"] if task.world else {}
    ask = ("Thanks for reaching out, I'm happy to look into this. Could you give me your order number, the email "
           "address on your account and your ZIP code? What would you like us to do, and why?")
    if r["kind"] == "exchange":
        ask += " Which size or colour would you like instead?"
    steps = [_say(ask), _call("find_customer", email=f["email"])]
    if variant != "no_verify":
        steps.append(_call("verify_identity", customer_id=d["customer_id"], email=f["email"], zip_code=f["zip"]))
    steps.append(_call("get_order", order_id=r["order_id"]))
    if r["kind"] == "exchange":
        steps.append(_call("list_variants", sku=tables["items"][r["item_id"]]["sku"]))
    steps.append(_call("read_policy", section=_SECTION[r["kind"]]))

    outcome, why, clauses = gold["outcome"], gold["why"], ", ".join(gold["clauses"])
    actions = [(a["tool"], dict(a["args"])) for a in gold["actions"]]
    if variant == "approve_all" and outcome not in ("refund", "exchange", "cancel"):
        tool, args, _ = _requested_actions(task)
        outcome, actions = r["kind"], [(tool, args), ("close_ticket", {"ticket_id": tid,
                                                                         "resolution": _DONE[r["kind"]]})]
        why, clauses = "as the customer asked", "-"
    elif variant == "deny_all" and outcome != "deny":
        outcome, why, clauses = "deny", "we cannot make this change", "-"
        actions = [("close_ticket", {"ticket_id": tid, "resolution": "denied"})]
    elif variant == "escalate_all" and outcome != "escalate":
        outcome, why, clauses = "escalate", "a supervisor needs to review this", "-"
        actions = [("escalate", {"ticket_id": tid, "reason": "other"})]
    elif variant == "wrong_amount" and outcome == "refund":
        tables_o = tables["orders"][r["order_id"]]
        actions[0][1]["amount"] = round(float(tables_o["total"]) + 4.95, 2)  # refunds shipping too: wrong
    amount = next((a.get("amount") for t, a in actions if t == "issue_refund"), gold.get("amount"))
    if amount is None and outcome in ("refund", "cancel"):
        amount = _requested_actions(task)[2]

    if outcome in ("refund", "exchange", "cancel"):
        tool, args = actions[0]
        if variant == "no_confirm":
            steps.append(_say("Thank you. I'll take care of that for you right now."))
        else:
            steps.append(_say(_confirm_text(task, amount)))
        steps.append(_call(tool, **args))
        close = dict(actions[1][1]) if len(actions) > 1 else {"ticket_id": tid, "resolution": _DONE[r["kind"]]}
        steps.append(_call("close_ticket", **close, note=why))
        done = {"refund": f"Done: the refund of ${(amount or 0):.2f} has been issued to your original payment method.",
                "exchange": "Done: your exchange has been requested and a prepaid return label is on its way.",
                "cancel": f"Done: order {r['order_id']} has been cancelled and refunded."}[r["kind"]]
        steps.append(_say("" if variant == "silent" else done + " Thank you for contacting Northwind Outfitters."))
    elif outcome == "deny":
        steps.append(_say(f"I'm sorry, but I cannot do that: {why} (policy {clauses})."))
        steps.append(_call("close_ticket", ticket_id=tid, resolution="denied", note=why))
        steps.append(_say("" if variant == "silent" else
                          "I have closed this ticket. Thank you for contacting Northwind Outfitters."))
    else:
        steps.append(_say(f"Thank you. I cannot resolve this myself: {why} (policy {clauses}). I'm escalating your "
                          "ticket to a supervisor, who will contact you within two business days."))
        steps.append(_call("escalate", **actions[0][1], note=why))
        steps.append(_say("" if variant == "silent" else
                          "Your ticket is now with a supervisor. Thank you for your patience."))
    return steps


_CLOSING = ("I understand. The decision follows our policy, and a request for a manager is not by itself a reason "
            "to escalate (ES-3). Thank you for contacting Northwind Outfitters.")


def next_action(ep: Episode, variant: str = "oracle") -> Message:
    """The action of turn ``ep.turns`` of ``variant`` (after the plan: a polite closing line)."""
    steps = plan(ep.task, variant)
    return steps[ep.turns] if ep.turns < len(steps) else _say(_CLOSING)


def reference(ep: Episode) -> Message:
    """The environment's reference solution (``scripted:oracle``)."""
    return next_action(ep, "oracle")


class ScriptedAgent:
    """A policy running one of :data:`VARIANTS` (privileged like the oracle: it reads the task's gold)."""

    def __init__(self, variant: str) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown scripted support agent {variant!r}")
        self.variant = variant
        self.name = f"support-{variant}"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"spec": f"support-agent:{self.variant}"}

    async def act(self, ep: Episode) -> PolicyOutput:
        return PolicyOutput(next_action(ep, self.variant), Usage())
