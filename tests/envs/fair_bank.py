"""A fair bank that must pass every `envfoundry check`: it keeps state in all the places that are
safe, which a checker must not confuse with shared state.

- the session lives in ``ep.state`` and balances in ``ep.world`` (per rollout);
- transaction references come from ``ep.rng`` (seeded per rollout: random but reproducible);
- fees come from a read-only module-level table, and a pure ``lru_cache`` computes interest;
- the world factory caches one World per task (every rollout gets a fork of it);
- the grader caches the parsed gold answer per task id (a pure function of the task).
"""

import functools
from typing import Annotated, Literal

from pydantic import Field

from envfoundry import Environment, Message, Score, Task, ToolCall, ToolError, World, tool
from envfoundry.core.seeding import rng_for

CUSTOMERS = ("ana", "bo", "cy", "di", "ed", "flo", "gus", "hal")
FEES = {"checking": 1, "savings": 0, "business": 5}  # read-only constant table
Kind = Literal["checking", "savings", "business"]


@functools.cache
def interest(balance: int, rate_pct: int) -> int:
    return balance * rate_pct // 100


def tasks(split, seed):
    out = []
    for i in range(8):
        rng = rng_for("fairbank", split, seed, i)
        who, kind, amount = CUSTOMERS[i], rng.choice(list(FEES)), rng.randint(10, 90)
        start = rng.randint(100, 400)
        new = start + amount - FEES[kind]
        out.append(Task(env="fairbank", env_version="1", split=split,
                        prompt=f"Log in as {who}, deposit {amount} into your {kind} account and tell me its new "
                               "balance.",
                        world={"start": start}, data={"who": who, "kind": kind, "amount": amount, "balance": new}))
    return out


@functools.lru_cache(maxsize=256)
def _cached_world(start: int) -> World:
    return World({"accounts": {f"{c}/{k}": {"balance": start} for c in CUSTOMERS for k in FEES}})


def world(task):
    return _cached_world((task.world or {})["start"])


@tool
def login(ep, customer: str) -> str:
    """Log in as `customer`."""
    if customer not in CUSTOMERS:
        raise ToolError(f"no customer {customer!r}")
    ep.state["who"] = customer
    return f"logged in as {customer}"


def _key(ep, kind: str) -> str:
    if "who" not in ep.state:
        raise ToolError("log in first")
    return f"{ep.state['who']}/{kind}"


@tool
def balance(ep, kind: Kind = "checking") -> str:
    """The balance of your `kind` account, and a year's interest on it at 2%."""
    b = ep.world.get("accounts", _key(ep, kind))["balance"]
    return f"{kind}: {b} (interest {interest(b, 2)} a year)"


@tool(writes=True)
def deposit(ep, amount: Annotated[int, Field(ge=1, le=1000)], kind: Kind = "checking") -> str:
    """Deposit `amount` (1 to 1000) into your `kind` account; the account's fee is taken."""
    key = _key(ep, kind)
    b = ep.world.get("accounts", key)["balance"] + amount - FEES[kind]
    ep.world.update("accounts", key, balance=b)
    return f"deposited {amount} (fee {FEES[kind]}), reference TX-{ep.rng.randint(1000, 9999)}"


@tool
def history(ep, kinds: list[Kind], last: Annotated[int, Field(ge=0, le=20)] = 5) -> str:
    """Summary of the given accounts (an empty list: none)."""
    return "\n".join(f"{k}: {ep.world.get('accounts', _key(ep, k))['balance']}" for k in kinds[:last]) or "nothing"


@functools.cache
def _gold(task_id: str, balance: int) -> str:
    return str(balance)


def grade(g) -> Score:
    gold = _gold(g.task.id, g.task.data["balance"])
    ok = g.final.strip() == gold
    return Score(1.0 if ok else 0.0, {}, "right" if ok else f"expected {gold}")


def reference(ep):
    d = ep.task.data
    plan = [ToolCall("login", {"customer": d["who"]}), ToolCall("balance", {"kind": d["kind"]}),
            ToolCall("deposit", {"amount": d["amount"], "kind": d["kind"]}), ToolCall("balance", {"kind": d["kind"]})]
    done = sum(1 for m in ep.messages if m.role == "tool")
    if done < len(plan):
        return Message("assistant", "", [plan[done]])
    return Message("assistant", str(d["balance"]))


def make_env():
    return Environment(name="fairbank", tasks=tasks, tools=[login, balance, deposit, history], world=world,
                       graders=grade, reference=reference, max_turns=8)
