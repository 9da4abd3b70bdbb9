"""Environments whose rollouts share state they should not: each must fail `envfoundry check`'s
``fork_isolation``. The first rollout in a fresh process is right, which is why such bugs
survive a quick manual test.

The shared bank: log in as the task's customer, read the balance, deposit the task's amount, read
the balance again, answer with the new balance (the reference solution takes it from the task's
data, so it passes however wrong the tools' answers are; only what the tools show differs).
"""

from envfoundry import Environment, Message, Score, Task, ToolCall, ToolError, World, tool
from envfoundry.core.seeding import rng_for

CUSTOMERS = ("ana", "bo", "cy", "di", "ed", "flo")


def _tasks(name):
    def tasks(split, seed):
        out = []
        for i in range(6):
            rng = rng_for(name, split, seed, i)
            who, amount = CUSTOMERS[i], rng.randint(10, 90)
            start = 100 + 10 * i + (0 if split == "test" else 1000)  # no task in two splits
            out.append(Task(env=name, env_version="1", split=split,
                            prompt=f"Log in as {who}, deposit {amount} and tell me the new balance.",
                            world={"start": start}, data={"who": who, "amount": amount, "balance": start + amount}))
        return out
    return tasks


def _world(task):
    w = task.world or {}
    return World({"accounts": {c: {"balance": w.get("start", 100)} for c in CUSTOMERS}})


def _grade(g) -> Score:
    ok = g.final.strip() == str(g.task.data["balance"])
    return Score(1.0 if ok else 0.0, {}, "right balance" if ok else f"expected {g.task.data['balance']}")


def _reference(ep):
    """login, balance, deposit, balance, then the number the last balance showed."""
    done = [m.content for m in ep.messages if m.role == "tool"]
    d = ep.task.data
    plan = [ToolCall("login", {"customer": d["who"]}), ToolCall("balance", {}),
            ToolCall("deposit", {"amount": d["amount"]}), ToolCall("balance", {})]
    if len(done) < len(plan):
        return Message("assistant", "", [plan[len(done)]])
    return Message("assistant", str(d["balance"]))


def _who(ep) -> str:
    if "who" not in ep.state:
        raise ToolError("log in first")
    return ep.state["who"]


def _bank(name, login, balance, deposit, world=_world):
    return Environment(name=name, tasks=_tasks(name), tools=[login, balance, deposit], world=world,
                       graders=_grade, reference=_reference, max_turns=8)


# ------------------------------------------------------------- a class-level session
class Session:
    customer: str | None = None  # a class attribute: one session for every rollout


@tool(name="login")
def login_cls(ep, customer: str) -> str:
    """Log in as `customer`."""
    if customer not in CUSTOMERS:
        raise ToolError(f"no customer {customer!r}")
    Session.customer = customer
    return f"logged in as {customer}"


def _who_cls(ep) -> str:
    if Session.customer is None:
        raise ToolError("log in first")
    return Session.customer


@tool(name="balance")
def balance_cls(ep) -> str:
    """Your balance."""
    return str(ep.world.get("accounts", _who_cls(ep))["balance"])


@tool(name="deposit", writes=True)
def deposit_cls(ep, amount: int) -> str:
    """Deposit `amount`."""
    who = _who_cls(ep)
    ep.world.update("accounts", who, balance=ep.world.get("accounts", who)["balance"] + amount)
    return "deposited"


def class_session():
    return _bank("clssession", login_cls, balance_cls, deposit_cls)


# ------------------------------------------------------------- a module-global "current world"
_CURRENT: dict = {}


def _world_global(task):
    w = _world(task)
    _CURRENT["world"] = w  # tools use this instead of ep.world: the last reset wins
    return w


@tool(name="login")
def login_g(ep, customer: str) -> str:
    """Log in as `customer`."""
    if customer not in CUSTOMERS:
        raise ToolError(f"no customer {customer!r}")
    ep.state["who"] = customer
    return f"logged in as {customer}"


@tool(name="balance")
def balance_g(ep) -> str:
    """Your balance."""
    return str(_CURRENT["world"].get("accounts", _who(ep))["balance"])


@tool(name="deposit", writes=True)
def deposit_g(ep, amount: int) -> str:
    """Deposit `amount`."""
    w, who = _CURRENT["world"], _who(ep)
    w.update("accounts", who, balance=w.get("accounts", who)["balance"] + amount)
    return "deposited"


def global_world():
    return _bank("globalworld", login_g, balance_g, deposit_g, world=_world_global)


# ------------------------------------------------------------- records sharing a mutable list
_TABLES = {"accounts": {c: {"deposits": []} for c in CUSTOMERS}}  # one list per customer, for ever


def _world_shared(task):
    return World(_TABLES)  # World copies each record, but not the list inside it


@tool(name="balance")
def balance_l(ep) -> str:
    """Your balance."""
    start = (ep.task.world or {})["start"]
    return str(start + sum(ep.world.get("accounts", _who(ep))["deposits"]))


@tool(name="deposit", writes=True)
def deposit_l(ep, amount: int) -> str:
    """Deposit `amount`."""
    ep.world.get("accounts", _who(ep))["deposits"].append(amount)  # in place: every fork sees it
    return "deposited"


def shared_record_list():
    return _bank("sharedlist", login_g, balance_l, deposit_l, world=_world_shared)


# ------------------------------------------------------------- a mutable default argument
def _ledger(who, amount=0, book={}):  # noqa: B006 - the bug under test: one dict for every call
    book[who] = book.get(who, 0) + amount
    return book[who]


@tool(name="balance")
def balance_d(ep) -> str:
    """Your balance."""
    return str((ep.task.world or {})["start"] + _ledger(_who(ep)))


@tool(name="deposit", writes=True)
def deposit_d(ep, amount: int) -> str:
    """Deposit `amount`."""
    _ledger(_who(ep), amount)
    return "deposited"


def default_argument():
    return _bank("defaultarg", login_g, balance_d, deposit_d)


# ------------------------------------------------------------- scratch state in task.data
@tool(name="deposit", writes=True)
def deposit_t(ep, amount: int) -> str:
    """Deposit `amount`."""
    ep.task.data.setdefault("paid", []).append(amount)  # task.data is shared by every rollout of the task
    return "deposited"


@tool(name="balance")
def balance_t(ep) -> str:
    """Your balance."""
    return str((ep.task.world or {})["start"] + sum(ep.task.data.get("paid", [])))


def task_scratch():
    return _bank("taskscratch", login_g, balance_t, deposit_t)


# ------------------------------------------------------------- a cache keyed by id() of the task object
_BY_ID: dict[int, dict] = {}


@tool(name="login")
def login_i(ep, customer: str) -> str:
    """Log in as `customer`."""
    if customer not in CUSTOMERS:
        raise ToolError(f"no customer {customer!r}")
    _BY_ID[id(ep.task)] = {"who": customer}  # the task object is shared by every rollout of it
    return f"logged in as {customer}"


def _session_i(ep) -> dict:
    if id(ep.task) not in _BY_ID:
        raise ToolError("log in first")
    return _BY_ID[id(ep.task)]


@tool(name="balance")
def balance_i(ep) -> str:
    """Your balance."""
    s = _session_i(ep)
    return str(ep.world.get("accounts", s["who"])["balance"] + s.get("pending", 0))


@tool(name="deposit", writes=True)
def deposit_i(ep, amount: int) -> str:
    """Deposit `amount` (credited when the session ends)."""
    s = _session_i(ep)
    s["pending"] = s.get("pending", 0) + amount
    return "deposited"


def id_cache():
    return _bank("idcache", login_i, balance_i, deposit_i)


# ------------------------------------------------------------- a cache keyed by id() of the world
_BY_WORLD: dict[int, dict] = {}  # a freed world's id is soon reused by a new world


def _pending(ep) -> dict:
    return _BY_WORLD.setdefault(id(ep.world), {})


@tool(name="balance")
def balance_w(ep) -> str:
    """Your balance, with deposits not yet credited."""
    return str(ep.world.get("accounts", _who(ep))["balance"] + _pending(ep).get("amount", 0))


@tool(name="deposit", writes=True)
def deposit_w(ep, amount: int) -> str:
    """Deposit `amount` (credited when the session ends)."""
    _who(ep)
    _pending(ep)["amount"] = _pending(ep).get("amount", 0) + amount
    return "deposited"


def id_world_cache():
    return _bank("idworld", login_g, balance_w, deposit_w)
