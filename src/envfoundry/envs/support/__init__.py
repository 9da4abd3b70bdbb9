"""``support``: a customer-support desk with a written policy, a simulated customer and layered grading.

The agent chats with a customer (scripted personas, or a model) about one ticket, looks up
customers and orders, verifies identity, and refunds, exchanges, cancels, refuses or escalates as
the policy document (``read_policy``) requires; many requests must be refused or escalated. Gold
outcomes come from the policy's machine rules (:mod:`.policy`). Grading (:mod:`.grading`): the
world against the gold world, trace rules (verify before writing, confirm before irreversible
changes, no forbidden writes, tell the customer) and, with ``judge=...``, an LLM rubric.

Knobs in each task's metadata: ``persona``, ``request``, ``twist``, ``lie``, ``outcome``, ``clauses``,
``needs_escalation``, ``tier``, ``order_status``, ``order_age_days``, ``reason``, ``amount``, ``difficulty``.
"""

from __future__ import annotations

from typing import Any

from envfoundry import Environment, ProceduralTasks

from .customer import LLMCustomer, ScriptedCustomer, is_affirmative
from .grading import RUBRIC, SupportGrader, make_judge, trace_rules
from .policy import POLICY, TIERS, Request, decide
from .reference import VARIANTS, ScriptedAgent, plan, reference
from .tasks import NAME, PERSONAS, VERSION, generate
from .tools import TOOLS
from .world import build_world

SPLIT_SIZES = {"train": 5000, "test": 500}
SPLIT_WEIGHTS = {"train": 9, "test": 1}


def make_env(customer: str = "scripted", judge: str | None = None, judge_samples: int = 1,
             base_url: str | None = None, api_key_env: str | None = None,
             communication_weight: float = 0.25, max_turns: int = 30) -> Environment:
    """The support environment.

    Args:
        customer: ``scripted`` (deterministic personas) or a model spec for an LLM customer
            (``local``, ``openai:NAME`` with ``base_url``).
        judge: None (state and trace layers only: fast and offline; ``--env-arg judge=none``) or a
            model spec for the communication rubric (``local``, ``openai:NAME``).
        judge_samples: judgements per rollout (per-item majority).
        base_url, api_key_env: the OpenAI-compatible server of ``openai:`` customer or judge specs.
        communication_weight: share of the score that the rubric can take away.
    """
    cust = customer or "scripted"
    if cust == "scripted":
        reply: Any = ScriptedCustomer()
    else:
        from envfoundry import shared_client

        reply = LLMCustomer(shared_client(cust, base_url=base_url, api_key_env=api_key_env))
    jspec = judge or None
    rubric = make_judge(jspec, samples=judge_samples, base_url=base_url,
                        api_key_env=api_key_env) if jspec else None

    desc = "Customer support under a written policy: refunds, exchanges, cancellations, refusals, escalations"
    if cust != "scripted":
        desc += f" (customer: {cust})"
    if jspec:
        desc += f" (judge: {jspec})"
    return Environment(
        name=NAME,
        version=VERSION,
        description=desc,
        tasks=ProceduralTasks.source(generate, sizes=SPLIT_SIZES, weights=SPLIT_WEIGHTS),
        tools=TOOLS,
        world=lambda task: build_world((task.world or {})["tables"]),
        graders=SupportGrader(rubric, communication_weight=communication_weight),
        reference=reference,
        reply=reply,
        max_turns=max_turns,
    )


__all__ = [
    "NAME", "PERSONAS", "POLICY", "RUBRIC", "TIERS", "VARIANTS", "VERSION", "LLMCustomer", "Request",
    "ScriptedAgent", "ScriptedCustomer", "SupportGrader", "decide", "is_affirmative", "make_env", "make_judge",
    "plan", "trace_rules",
]
