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

from collections.abc import Sequence
from typing import Any

from ...core.env import Environment
from ...core.procedural import ProceduralTasks
from ...core.task import Task
from .customer import LLMCustomer, ScriptedCustomer, is_affirmative
from .grading import RUBRIC, SupportGrader, make_judge, trace_rules
from .policy import POLICY, TIERS, Request, decide
from .reference import VARIANTS, ScriptedAgent, plan, reference
from .tasks import NAME, PERSONAS, VERSION, generate
from .tools import TOOLS
from .world import build_world

SPLIT_SIZES = {"train": 5000, "test": 500}
SPLIT_WEIGHTS = {"train": 9, "test": 1}


def _opt(value: Any) -> str | None:
    return None if value in (None, "", "none", "None", "off") else str(value)


def make_env(customer: str = "scripted", judge: str | None = None, judge_samples: int | str = 1,
             base_url: str | None = None, api_key_env: str | None = None,
             communication_weight: float | str = 0.25, max_turns: int | str = 30) -> Environment:
    """The support environment.

    Args:
        customer: ``scripted`` (deterministic personas) or a model spec for an LLM customer
            (``local``, ``openai:NAME`` with ``base_url``).
        judge: None (state and trace layers only: fast and offline) or a model spec for the
            communication rubric (``local``, ``openai:NAME``).
        judge_samples: judgements per rollout (per-item majority).
        base_url, api_key_env: the OpenAI-compatible server of ``openai:`` customer or judge specs.
        communication_weight: share of the score that the rubric can take away.
    """
    cust = _opt(customer) or "scripted"
    if cust == "scripted":
        reply: Any = ScriptedCustomer()
    else:
        from ...policies.chat import shared_client

        reply = LLMCustomer(shared_client(cust, base_url=base_url, api_key_env=api_key_env))
    jspec = _opt(judge)
    rubric = make_judge(jspec, samples=int(judge_samples), base_url=base_url,
                        api_key_env=api_key_env) if jspec else None

    def tasks(split: str, seed: int) -> Sequence[Task]:
        return ProceduralTasks(generate, split=split, size=SPLIT_SIZES[split], seed=seed,
                               split_weights=SPLIT_WEIGHTS)

    desc = "Customer support under a written policy: refunds, exchanges, cancellations, refusals, escalations"
    if cust != "scripted":
        desc += f" (customer: {cust})"
    if jspec:
        desc += f" (judge: {jspec})"
    return Environment(
        name=NAME,
        version=VERSION,
        description=desc,
        splits=tuple(SPLIT_SIZES),
        tasks=tasks,
        tools=TOOLS,
        world=lambda task: build_world((task.world or {})["tables"]),
        graders=SupportGrader(rubric, communication_weight=float(communication_weight)),
        reference=reference,
        reply=reply,
        max_turns=int(max_turns),
    )


__all__ = [
    "NAME", "PERSONAS", "POLICY", "RUBRIC", "TIERS", "VARIANTS", "VERSION", "LLMCustomer", "Request",
    "ScriptedAgent", "ScriptedCustomer", "SupportGrader", "decide", "is_affirmative", "make_env", "make_judge",
    "plan", "trace_rules",
]
