"""The support environment: gold from the policy, personas, layered grading, the shipped labels."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

import envfoundry
from envfoundry import Message, ToolCall, World
from envfoundry.envs.support import (
    POLICY,
    VARIANTS,
    Request,
    ScriptedAgent,
    decide,
    is_affirmative,
    make_env,
    plan,
)
from envfoundry.envs.support.make_labels import DATA, build
from envfoundry.policies import local
from envfoundry.quality import CheckConfig, check_env
from envfoundry.testing import StubServer

ENV = make_env()
TEST = list(ENV.tasks("test")[:60])


def _find(**meta):
    return next(t for t in TEST if all(t.metadata.get(k) == v for k, v in meta.items()))


async def _drive(env, task, agent, seed=1):
    ep = env.reset(task, seed=seed)
    while not (ep.terminated or ep.truncated):
        ep.step((await agent.act(ep)).action)
    return ep


def _run(task, variant="oracle", seed=1, env=ENV):
    return asyncio.run(_drive(env, task, ScriptedAgent(variant), seed))


def test_oracle_scores_one_and_noop_zero(tmp_path: Path):
    oracle = envfoundry.evaluate("support", model="scripted:oracle", out=tmp_path / "o", limit=40)
    assert oracle.summary["pass_rate"] == 1.0 and oracle.summary["mean_score"] == 1.0
    noop = envfoundry.evaluate("support", model="scripted:noop", out=tmp_path / "n", limit=40)
    assert noop.summary["mean_score"] == 0.0
    assert noop.summary["outcomes"]["completed"] == 40  # the customer gives up: no error, no truncation


def test_check_passes():
    rep = check_env(ENV, spec="support", config=CheckConfig(tasks=8, samples=1, subprocess=False))
    assert rep.ok, [r for r in rep.results if r.status == "fail"]


def test_outcomes_knobs_and_disjoint_splits():
    outcomes = {t.metadata["outcome"] for t in TEST}
    assert outcomes == {"refund", "exchange", "cancel", "deny", "escalate"}
    assert {t.metadata["persona"] for t in TEST} == {"cooperative", "vague", "pushy", "liar"}
    for k in ("persona", "request", "clauses", "needs_escalation", "order_age_days", "tier", "difficulty"):
        assert k in TEST[0].metadata
    train = {t.id for t in ENV.tasks("train")[:300]}
    assert not train & {t.id for t in ENV.tasks("test")[:300]}
    assert [t.id for t in make_env().tasks("test")[:5]] == [t.id for t in TEST[:5]]


def _world(tier="standard", fraud=False, status="delivered", delivered="2025-05-20", price=40.0, qty=1,
           final=False, stock=3):
    return World({
        "customers": {"C-1": {"name": "A", "email": "a@x", "zip": "11111", "tier": tier, "fraud_hold": fraud}},
        "orders": {"O-1": {"customer_id": "C-1", "status": status, "placed_on": "2025-04-25",
                           "delivered_on": delivered if status == "delivered" else None, "payment_id": "P-1",
                           "total": price * qty}},
        "items": {"I-1": {"order_id": "O-1", "sku": "S-1", "name": "Tee", "price": price, "qty": qty,
                          "final_sale": final, "status": "delivered"}},
        "skus": {"S-1": {"product": "T", "name": "Tee", "size": "S", "color": "red", "price": price, "stock": 1},
                 "S-2": {"product": "T", "name": "Tee", "size": "M", "color": "red", "price": price, "stock": stock}},
        "payments": {"P-1": {"order_id": "O-1", "method": "Visa", "amount": price * qty, "refunded": 0.0}},
        "tickets": {"T-1": {"status": "open"}},
    })


@pytest.mark.parametrize("world,req,outcome,clause", [
    (_world(delivered="2025-05-03"), Request("refund", "O-1", "I-1", "changed_mind"), "refund", "RF-1"),  # day 30
    (_world(delivered="2025-05-02"), Request("refund", "O-1", "I-1", "changed_mind"), "deny", "RF-1"),  # day 31
    (_world(delivered="2025-05-02"), Request("refund", "O-1", "I-1", "defective"), "refund", "RF-1"),
    (_world(final=True), Request("refund", "O-1", "I-1", "changed_mind"), "deny", "RF-2"),
    (_world(price=80.0, qty=2), Request("refund", "O-1", "I-1", "defective"), "escalate", "ES-1"),
    (_world(price=80.0, qty=2, tier="gold"), Request("refund", "O-1", "I-1", "defective"), "refund", "RF-3"),
    (_world(fraud=True), Request("refund", "O-1", "I-1", "defective"), "escalate", "ES-2"),
    (_world(), Request("refund", "O-1", "I-1", "defective", verifiable=False), "deny", "ID-2"),
    (_world(stock=0), Request("exchange", "O-1", "I-1", "changed_mind", "S-2"), "deny", "EX-3"),
    (_world(), Request("exchange", "O-1", "I-1", "changed_mind", "S-2"), "exchange", "EX-1"),
    (_world(status="shipped"), Request("cancel", "O-1"), "deny", "CN-2"),
    (_world(status="shipped", tier="platinum"), Request("cancel", "O-1"), "cancel", "CN-2"),
    (_world(status="processing"), Request("cancel", "O-1"), "cancel", "CN-1"),
    (_world(), Request("cancel", "O-1"), "deny", "CN-3"),
])
def test_policy_rules(world, req, outcome, clause):
    d = decide(world, req, "T-1")
    assert d.outcome == outcome and clause in d.clauses and clause.split("-")[0] in POLICY


def test_refusal_task_where_issuing_the_refund_scores_zero():
    task = _find(request="refund", outcome="deny", lie=None)
    ep = _run(task, "approve_all")
    s = ENV.grade(ep)
    assert s.value == 0.0 and not s.passed
    bad = s.breakdown["trace"]["rules"]["no_forbidden_write"]["violations"]
    assert bad and "issue_refund" in bad[0] and task.metadata["clauses"][0] in bad[0]
    assert any(c["table"] == "refunds" for c in s.breakdown["state"]["breakdown"]["collateral"])
    assert ENV.grade(_run(task)).value == 1.0


def test_each_trace_rule_catches_its_mistake():
    task = _find(outcome="refund")
    for variant, rule in (("no_verify", "verified_before_write"), ("no_confirm", "confirmed_before_irreversible"),
                          ("silent", "customer_informed")):
        s = ENV.grade(_run(task, variant))
        assert s.breakdown["state"]["passed"] and s.value == 0.0, variant
        assert not s.breakdown["trace"]["rules"][rule]["ok"], variant
    s = ENV.grade(_run(task, "wrong_amount"))
    assert not s.passed and not s.breakdown["state"]["passed"]


def test_persona_determinism_and_facts_only_when_asked():
    task = _find(persona="vague")
    a, b = _run(task, seed=5), _run(task, seed=5)
    assert [m.to_dict() for m in a.messages] == [m.to_dict() for m in b.messages]
    order_id = task.data["facts"]["order_id"]
    assert order_id not in task.prompt  # the vague customer opens without details
    ep = ENV.reset(task, seed=5)
    reply = ep.step(Message("assistant", "Hello! Thanks for writing in.")).observation[0].content
    assert order_id not in reply and task.data["facts"]["email"] not in reply
    reply = ep.step(Message("assistant", "What is your order number?")).observation[0].content
    assert order_id in reply and task.data["facts"]["email"] not in reply
    reply = ep.step(Message("assistant", "And the email on the account?")).observation[0].content
    assert task.data["facts"]["email"] in reply
    # other seeds choose other phrasings, never other facts
    texts = set()
    for s in range(8):
        ep = ENV.reset(task, seed=s)
        texts.add(ep.step(Message("assistant", "What is your order number?")).observation[0].content)
    assert len(texts) > 1 and all(order_id in t for t in texts)


def test_customer_confirms_only_its_own_request_and_ends_when_the_ticket_closes():
    task = _find(request="refund", persona="cooperative")
    ep = ENV.reset(task, seed=0)
    assert is_affirmative(ep.step(Message("assistant", "Shall I go ahead with the refund?")).observation[0].content)
    no = ep.step(Message("assistant", "Shall I cancel the whole order instead?")).observation[0].content
    assert not is_affirmative(no)
    ep.step(Message("assistant", "", [ToolCall("close_ticket", {"ticket_id": task.data["ticket_id"],
                                                                "resolution": "denied"})]))
    assert ep.step(Message("assistant", "Closed.")).terminated


def test_pushy_customer_pushes_back_once_and_the_liar_fails_verification():
    pushy = _find(persona="pushy", outcome="deny")
    msgs = [m.content for m in _run(pushy).messages if m.role == "user"]
    assert sum("manager" in m or "supervisor" in m for m in msgs) == 1
    liar = _find(lie="identity")
    ep = _run(liar)
    assert any(m.role == "tool" and "verification failed" in m.content for m in ep.messages)
    assert liar.metadata["outcome"] == "deny" and "ID-2" in liar.metadata["clauses"]


def test_scripted_agents_and_plans():
    task = TEST[0]
    assert plan(task)[0].role == "assistant" and set(VARIANTS) >= {"oracle", "approve_all", "deny_all"}
    with pytest.raises(ValueError):
        plan(task, "nope")


def test_llm_customer_through_a_model_server(tmp_path: Path):
    with StubServer(reply="Yes, please go ahead.").run_in_thread() as url:
        env = make_env(customer="openai:stub-model", base_url=url)
        run = envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "r", limit=3)
    recs = list(run.records())
    assert [r["outcome"] for r in recs] == ["completed"] * 3
    assert all(r["passed"] for r in recs)  # the oracle's plan needs only a yes from the customer
    assert any(m["content"] == "Yes, please go ahead." for m in recs[0]["messages"] if m["role"] == "user")


def test_shipped_labels_are_reproducible():
    items, labels = build()
    shipped = [json.loads(x) for x in (DATA / "labels.jsonl").read_text().splitlines()]
    assert [json.loads(json.dumps(r, sort_keys=True)) for r in labels] == shipped
    ids = [json.loads(x)["id"] for x in (DATA / "items.jsonl").read_text().splitlines()]
    assert ids == [i["id"] for i in items]
    gt = [r for r in labels if r["annotator"] == "ground_truth"]
    assert 0.3 < sum(r["label"] for r in gt) / len(gt) < 0.8


def _local_missing() -> str | None:
    try:
        local.check_llama_installed()
        local.find_default_gguf()
    except Exception as e:  # noqa: BLE001
        return str(e)
    return None


@pytest.mark.local_model
@pytest.mark.skipif(_local_missing() is not None and not os.environ.get("CI"), reason=f"{_local_missing()}")
def test_local_customer_and_judge(tmp_path: Path):
    env = make_env(customer="local", judge="local")
    run = envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "r", limit=1, timeout_s=300)
    (rec,) = run.records()
    assert rec["outcome"] in ("completed", "truncated", "grader_error")  # never env_error or policy_error
    if rec["outcome"] != "grader_error":
        assert "communication" in rec["breakdown"]
