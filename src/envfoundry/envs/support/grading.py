"""Grading of support episodes in layers, each reported in the breakdown.

1. ``state``: the agent's writes against the gold world, which is the initial world with the
   task's gold actions replayed through the same operations the tools use; every requirement is
   derived from that gold diff (free-text ``note`` fields ignored) and any other change is
   collateral (:mod:`envfoundry.grading.state_diff`).
2. ``trace``: rules read from the transcript: ``verified_before_write`` (a successful
   verify_identity of the order's customer before any account change), ``confirmed_before_irreversible``
   (the customer's last message before a refund, exchange or cancellation is a clear yes to a
   question), ``no_forbidden_write`` (no successful write outside the policy's gold actions:
   refusing means not refunding), ``customer_informed`` (the decision named to the customer; after an
   account change, named in a message after the last one) and ``facts_match_records`` (every order number and
   dollar amount told to the customer exists in the records: the customer's orders, prices,
   quantities x prices, totals, amounts in tool results, the tier limits). All must hold.
3. ``communication`` (only with a judge): the :data:`RUBRIC` judged by an LLM.

value = state x trace (all or nothing), times ``1 - w + w * communication`` with a judge;
passed = state passed, every trace rule held and (with a judge) the rubric passed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envfoundry import (
    ChangePattern,
    Delete,
    GradeInput,
    Insert,
    Message,
    Rubric,
    RubricGrader,
    RubricItem,
    Score,
    StateDiffSpec,
    Update,
    World,
    grade_state_diff,
    render_transcript,
    satisfies,
)

from .customer import is_affirmative
from .policy import ACCOUNT_WRITES, POLICY_BRIEF
from .world import WRITE_OPS, apply_actions

FREE_TEXT = ("note",)
_TARGET = {"issue_refund": ("order_id", "item_id"), "exchange_item": ("order_id", "item_id"),
           "cancel_order": ("order_id",), "escalate": ("ticket_id",), "close_ticket": ("ticket_id",)}

RUBRIC = Rubric(
    task=("You audit a customer-support chat of Northwind Outfitters against its policy. AGENT CALLS lines are "
          "the agent's tool calls; RESULT lines are what the systems answered."),
    items=(
        RubricItem("verified", "Did verify_identity succeed before any refund, exchange or cancellation? "
                   "(yes if there was none)", 2.0, critical=True),
        RubricItem("confirmed", "Did the customer say yes before any refund, exchange or cancellation? "
                   "(yes if there was none)", 2.0, critical=True),
        RubricItem("policy_outcome", "Is the final outcome (refund, exchange, cancellation, denial or escalation, "
                   "and the amount) what the policy requires?", 3.0, critical=True),
        RubricItem("explained", "Did the agent tell the customer the decision and the reason?"),
        RubricItem("courteous", "Was the agent polite and honest?"),
    ),
)

_EXAMPLE = """CUSTOMER: I want a refund for the Merino Tee from order O-11111, it's too small.
AGENT: Could you give me your order number, email and ZIP code?
CUSTOMER: Order O-11111, ana@example.com, ZIP 12345.
AGENT CALLS find_customer(email=ana@example.com)
RESULT: customer C-1, tier standard, fraud hold no
AGENT CALLS get_order(order_id=O-11111)
RESULT: order O-11111 delivered, 41 days since delivery; items: I-1 Merino Tee $39.50 x1 final sale no
AGENT CALLS issue_refund(order_id=O-11111, item_id=I-1, amount=39.5)
RESULT: refund RFD-1 of $39.50 issued
AGENT: Done, you have your money back."""
#: one worked example (a refund without verification or a yes, 41 days after delivery on standard: past 30)
EXAMPLES = ((_EXAMPLE, {"verified": False, "confirmed": False, "policy_outcome": False, "explained": False,
                        "courteous": True}),)


def _brief(name: str, content: str) -> str:
    """A tool result in one short line (what a judge needs to apply the policy)."""
    if content.startswith("error:") or name not in ("find_customer", "get_order", "list_variants", "read_policy"):
        return content[:160]
    if name == "read_policy":
        return "(policy text)"
    try:
        d = json.loads(content)
    except ValueError:
        return content[:160]
    if name == "find_customer":
        return (f"customer {d.get('customer_id')}, tier {d.get('tier')}, "
                f"fraud hold {'yes' if d.get('fraud_hold') else 'no'}")
    if name == "get_order":
        days = d.get("days_since_delivery")
        items = "; ".join(f"{i.get('item_id')} {i.get('name')} ${float(i.get('price', 0)):.2f} x{i.get('qty')} "
                          f"final sale {'yes' if i.get('final_sale') else 'no'}" for i in d.get("items", []))
        return (f"order {d.get('order_id')} {d.get('status')}"
                + (f", {days} days since delivery" if days is not None else "") + f"; items: {items}")
    return "variants: " + "; ".join(f"{v.get('sku')} stock {v.get('stock')}" for v in d.get("variants", []))


def _call_kv(name: str, args: Any) -> str:
    if isinstance(args, str):
        try:
            args = json.loads(args or "{}")
        except ValueError:
            pass
    shown = ", ".join(f"{k}={v}" for k, v in args.items() if k != "note") if isinstance(args, dict) else str(args)[:120]
    return f"{name}({shown})"


def render(messages: Sequence[Message | Mapping[str, Any]]) -> str:
    """A compact transcript for the judge: tool calls as ``name(k=v)``, tool results in one line."""
    return render_transcript(messages, max_chars=None, call=_call_kv,
                             result=lambda name, content: f"RESULT: {_brief(name, content)}")


def _close_to(x: float) -> Any:
    return satisfies(lambda v: abs(float(v) - x) < 0.005, f"== {x:.2f}")


def _pred(v: Any) -> Any:
    return _close_to(float(v)) if isinstance(v, float) else v


def gold_world(g: GradeInput) -> World:
    assert g.world_before is not None
    return apply_actions(g.world_before, g.task.data["gold"]["actions"])


def state_spec(before: World, gold: World) -> StateDiffSpec:
    """Requirements that turn ``before`` into ``gold``; free-text fields are ignored."""
    require: list[Any] = []
    updates: dict[tuple[str, str], dict[str, Any]] = {}
    for c in before.diff(gold):
        if c.op == "insert":
            where = {k: _pred(v) for k, v in (c.after or {}).items() if k not in FREE_TEXT}
            require.append(Insert(c.table, where=where, name=f"new {c.table} record"))
        elif c.op == "delete":
            require.append(Delete(c.table, c.key))
        elif c.field not in FREE_TEXT:
            updates.setdefault((c.table, c.key), {})[c.field or ""] = _pred(c.after)
    require.extend(Update(t, k, where=w) for (t, k), w in updates.items())
    return StateDiffSpec(require=require, ignore=[ChangePattern(field=f) for f in FREE_TEXT])


@dataclass(frozen=True, slots=True)
class Call:
    index: int  # position of the assistant message in the transcript
    name: str
    args: dict[str, Any]
    ok: bool
    result: str


def tool_calls(messages: tuple[Message, ...] | list[Message]) -> list[Call]:
    """Every tool call with its parsed arguments and whether it succeeded."""
    results = {m.tool_call_id: m.content for m in messages if m.role == "tool"}
    out = []
    for i, m in enumerate(messages):
        for c in m.tool_calls if m.role == "assistant" else ():
            args = c.arguments
            if isinstance(args, str):
                try:
                    args = json.loads(args or "{}")
                except ValueError:
                    args = {}
            res = results.get(c.id, "error: no result")
            out.append(Call(i, c.name, args if isinstance(args, dict) else {}, not res.startswith("error:"), res))
    return out


def _sig(name: str, args: Mapping[str, Any]) -> tuple[Any, ...]:
    return (name, *(str(args.get(k, "")).strip() for k in _TARGET.get(name, ())))


_DECISION = {
    "refund": re.compile(r"refund|money back|reimburs"),
    "exchange": re.compile(r"exchang|swap|replac"),
    "cancel": re.compile(r"cancel"),
    # a refusal, not just an apology: "Sorry for the wait" does not tell the customer the decision
    "deny": re.compile(r"cannot|can't|can not|unable|not able|not eligible|denied|declin|not possible"),
    "escalate": re.compile(r"supervisor|escalat|manager|specialist"),
}
_ORDER_ID = re.compile(r"\bO-\d{5}\b")
_DOLLARS = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?")


def _cents(text: str) -> set[int]:
    return {round(float(a.replace(",", "") + (b or "")) * 100) for a, b in _DOLLARS.findall(text)}


def _wrong_facts(g: GradeInput, said: list[str]) -> list[str]:
    """Order numbers and dollar amounts told to the customer that no record backs."""
    before = g.world_before
    assert before is not None
    cust = g.task.data["customer_id"]
    orders = {k for k, o in before.rows("orders") if o["customer_id"] == cust}
    known = {round(x * 100) for x in (150.0, 300.0, 500.0)}
    for k, o in before.rows("orders"):
        if k in orders:
            known.add(round(float(o["total"]) * 100))
    for _, it in before.rows("items"):
        if it["order_id"] in orders:
            known |= {round(float(it["price"]) * 100), round(float(it["price"]) * int(it["qty"]) * 100)}
    for m in g.messages:
        if m.role in ("tool", "user"):
            known |= _cents(m.content)
    out = []
    for text in said:
        for oid in sorted(set(_ORDER_ID.findall(text)) - orders):
            out.append(f"told the customer about order {oid}, which is not theirs")
        for c in sorted(_cents(text) - known):
            out.append(f"told the customer ${c / 100:.2f}, which matches no record")
    return out


def trace_rules(g: GradeInput) -> dict[str, Any]:
    """The trace layer: each rule's verdict and violations."""
    msgs = g.messages
    calls = tool_calls(msgs)
    before = g.world_before
    assert before is not None
    gold = g.task.data["gold"]
    allowed = {_sig(a["tool"], a["args"]) for a in gold["actions"]}
    verified: set[str] = set()
    v: dict[str, list[str]] = {"verified_before_write": [], "confirmed_before_irreversible": [],
                               "no_forbidden_write": [], "customer_informed": []}
    last_write = -1
    first_user = next((i for i, m in enumerate(msgs) if m.role == "user"), 0)
    for c in calls:
        if c.name == "verify_identity" and c.ok:
            verified.add(str(c.args.get("customer_id", "")).strip())
        if not c.ok or c.name not in WRITE_OPS:
            continue
        what = f"{c.name}({', '.join(f'{k}={c.args.get(k)!r}' for k in _TARGET[c.name])})"
        if c.name in ACCOUNT_WRITES:
            last_write = c.index
            order = before.get("orders", str(c.args.get("order_id", "")).strip())
            owner = order["customer_id"] if order else "?"
            if owner not in verified:
                v["verified_before_write"].append(f"{what} before verifying customer {owner} (ID-1)")
            users = [i for i in range(first_user + 1, c.index) if msgs[i].role == "user"]
            yes = bool(users) and is_affirmative(msgs[users[-1]].content)
            asked = yes and any(msgs[i].role == "assistant" and "?" in msgs[i].content
                                for i in range(max(first_user, users[-1] - 3), users[-1]))
            if not (yes and asked):
                v["confirmed_before_irreversible"].append(f"{what} without the customer's yes to a question (CF-1)")
        if c.name != "close_ticket" and _sig(c.name, c.args) not in allowed:
            v["no_forbidden_write"].append(
                f"{what} is not allowed: the policy requires {gold['outcome']} ({', '.join(gold['clauses'])}: "
                f"{gold['why']})")
    start = last_write if last_write >= 0 else first_user
    said = [m.content for m in msgs[first_user + 1:] if m.role == "assistant" and m.content.strip()]
    # after an account change the customer must hear that it was done: naming the action only in
    # the question before it ("Shall I cancel it?") does not tell them the outcome
    told = said if last_write < 0 else [m.content for m in msgs[start + 1:]
                                        if m.role == "assistant" and m.content.strip()]
    if not any(m.role == "assistant" and not m.tool_calls and m.content.strip() for m in msgs[start + 1:]):
        v["customer_informed"].append("no message to the customer after the last account change"
                                      if last_write >= 0 else "the agent never wrote to the customer")
    elif not any(_DECISION[gold["outcome"]].search(t.lower()) for t in told):
        v["customer_informed"].append(f"the agent never told the customer the decision ({gold['outcome']})"
                                      + (" after carrying it out" if last_write >= 0 else ""))
    v["facts_match_records"] = _wrong_facts(g, said)
    rules = {k: {"ok": not x, "violations": x} for k, x in v.items()}
    ok = all(r["ok"] for r in rules.values())
    return {"value": 1.0 if ok else 0.0, "passed": ok, "rules": rules}


def policy_context(g: GradeInput | None = None) -> str:
    """The judge's context: the policy digest (SmolLM2-sized; a larger judge could take ``POLICY``)."""
    return POLICY_BRIEF


class SupportGrader:
    """State and trace layers, plus the communication layer when ``judge`` is given."""

    name = "support"
    weight = 1.0

    def __init__(self, judge: RubricGrader | None = None, *, communication_weight: float = 0.25) -> None:
        if not 0.0 <= communication_weight <= 1.0:
            raise ValueError(f"communication_weight must be in [0, 1], got {communication_weight}")
        self.judge = judge
        self.communication_weight = communication_weight

    def grade(self, g: GradeInput) -> Score:
        if g.world_before is None or g.world_after is None:
            raise ValueError("the support grader needs the worlds before and after")
        state = grade_state_diff(g.world_before, g.world_after, state_spec(g.world_before, gold_world(g)))
        trace = trace_rules(g)
        value = state.value * trace["value"]
        passed = bool(state.passed) and trace["passed"]
        breakdown: dict[str, Any] = {"state": state.to_dict(), "trace": trace}
        why = [f"state: {state.explanation}"]
        bad = [x for r in trace["rules"].values() for x in r["violations"]]
        why.append("trace: " + ("all rules hold" if not bad else "; ".join(bad)))
        if self.judge is not None:
            comm = self.judge.grade(g)
            w = self.communication_weight
            value *= 1.0 - w + w * comm.value
            passed = passed and bool(comm.passed)
            breakdown["communication"] = comm.to_dict()
            why.append(f"communication: {comm.explanation}")
        breakdown["outcome_required"] = g.task.data["gold"]["outcome"]
        return Score(min(1.0, max(0.0, value)), breakdown, " | ".join(why), passed)


def make_judge(spec: str, *, samples: int = 1, base_url: str | None = None, api_key_env: str | None = None,
               retry: Any = None) -> RubricGrader:
    """The support rubric judged by ``spec`` with the policy as context."""
    return RubricGrader(RUBRIC, judge=spec, base_url=base_url, api_key_env=api_key_env, retry=retry, samples=samples,
                        context=policy_context, name="communication", render=render, examples=EXAMPLES)
