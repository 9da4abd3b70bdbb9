"""Tools that crash on a value their own schema allows: each must fail `envfoundry check`'s
``bad_calls``, which names the tool and the value. Each environment otherwise works: its reference
solution passes, because it never sends the value that crashes.

The frame: orders O-1 .. O-5; the task asks for one order to be handled with one tool call.
"""

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field

from envfoundry import Environment, Message, Score, Task, ToolCall, ToolError, World, tool

ORDERS = [f"O-{i}" for i in range(1, 6)]


def _env(name, tools, call):
    """``call(task) -> (tool name, arguments)``: the reference's one call; the grader checks that
    the order's ``done`` field was set by it."""
    def tasks(split, seed):
        return [Task(env=name, env_version="1", split=split, prompt=f"Please handle order {o} ({split}).",
                     data={"order": o}) for o in ORDERS]

    def world(task):
        return World({"orders": {o: {"status": "pending", "done": False} for o in ORDERS}})

    def grade(g):
        ok = g.world_after.get("orders", g.task.data["order"])["done"]
        return Score(1.0 if ok else 0.0, {}, "handled" if ok else "not handled")

    def reference(ep):
        if any(m.role == "tool" for m in ep.messages):
            return Message("assistant", "Done.")
        tname, args = call(ep.task)
        return Message("assistant", "", [ToolCall(tname, args)])

    return Environment(name=name, tasks=tasks, tools=tools, world=world, graders=grade, reference=reference,
                       max_turns=4)


def _order(ep, order_id: str):
    if ep.world.get("orders", order_id) is None:
        raise ToolError(f"no order {order_id!r} (orders look like O-1)")
    return ep.world.get("orders", order_id)


# ------------------------------------------------------------- a Literal member with no code path
LABELS = {"pending": "waiting", "shipped": "on its way", "delivered": "arrived"}  # "cancelled" forgotten


@tool(writes=True)
def set_status(ep, order_id: str, status: Literal["pending", "shipped", "delivered", "cancelled"]) -> str:
    """Set an order's status."""
    _order(ep, order_id)  # a made-up id never reaches the label lookup below
    ep.world.update("orders", order_id, status=status, done=True)
    return f"{order_id} is now {LABELS[status]}"


def literal_keyerror():
    return _env("literalcrash", [set_status], lambda t: ("set_status", {"order_id": t.data["order"],
                                                                        "status": "shipped"}))


# ------------------------------------------------------------- an Enum member an if/elif forgot
class Priority(Enum):
    LOW = "low"
    NORMAL = "normal"
    URGENT = "urgent"


@tool(writes=True)
def prioritise(ep, order_id: str, priority: Priority) -> str:
    """Set an order's shipping priority."""
    _order(ep, order_id)
    if priority is Priority.LOW:
        days = 7
    elif priority is Priority.NORMAL:
        days = 3
    ep.world.update("orders", order_id, done=True)
    return f"{order_id} ships within {days} days"  # UnboundLocalError for URGENT


def enum_unhandled():
    return _env("enumcrash", [prioritise], lambda t: ("prioritise", {"order_id": t.data["order"],
                                                                     "priority": "normal"}))


# ------------------------------------------------------------- the top of a constrained int
SLOTS = ["8-10", "10-12", "12-14", "14-16", "16-18"]


@tool(writes=True)
def book_slot(ep, order_id: str, slot: Annotated[int, Field(ge=1, le=5)]) -> str:
    """Book delivery slot 1 to 5 for an order."""
    _order(ep, order_id)
    ep.world.update("orders", order_id, done=True)
    return f"{order_id}: delivery {SLOTS[slot]}"  # off by one: slot 5 is out of range


def bound_off_by_one():
    return _env("slotcrash", [book_slot], lambda t: ("book_slot", {"order_id": t.data["order"], "slot": 2}))


# ------------------------------------------------------------- an empty string
@tool(writes=True)
def sign(ep, order_id: str, name: str) -> str:
    """Sign for an order with your name."""
    _order(ep, order_id)
    ep.world.update("orders", order_id, done=True)
    return f"signed by {name[0].upper()}. {name.split()[-1]}"  # IndexError on ""


def empty_string():
    return _env("signcrash", [sign], lambda t: ("sign", {"order_id": t.data["order"], "name": "Ana Lee"}))


# ------------------------------------------------------------- an empty list
@tool(writes=True)
def rate(ep, order_id: str, stars: list[Annotated[int, Field(ge=1, le=5)]]) -> str:
    """Rate an order's items, 1 to 5 stars each."""
    _order(ep, order_id)
    ep.world.update("orders", order_id, done=True)
    return f"average {sum(stars) / len(stars):.1f} stars"  # ZeroDivisionError on []


def empty_list():
    return _env("ratecrash", [rate], lambda t: ("rate", {"order_id": t.data["order"], "stars": [4, 5]}))


# ------------------------------------------------------------- null where optional
@tool(writes=True)
def note(ep, order_id: str, text: str | None = "") -> str:
    """Attach a note to an order (text may be null)."""
    _order(ep, order_id)
    ep.world.update("orders", order_id, done=True)
    return f"noted: {text.strip() or '(empty)'}"  # AttributeError on null


def optional_null():
    return _env("notecrash", [note], lambda t: ("note", {"order_id": t.data["order"], "text": "fragile"}))


# ------------------------------------------------------------- fair: every member and bound handled
@tool(writes=True)
def handle(ep, order_id: str, status: Literal["pending", "shipped", "delivered", "cancelled"] = "shipped",
           priority: Priority = Priority.NORMAL, slot: Annotated[int, Field(ge=1, le=5)] = 1,
           signer: str = "", stars: list[Annotated[int, Field(ge=1, le=5)]] = [],  # noqa: B006 - pydantic copies it
           text: str | None = None, discount: float = 0.0) -> str:
    """Handle an order: status, priority, delivery slot (1-5), signature, rating, note, discount."""
    _order(ep, order_id)
    if discount < 0:
        raise ToolError(f"discount must not be negative, got {discount}")
    label = {"pending": "waiting", "shipped": "on its way", "delivered": "arrived", "cancelled": "cancelled"}[status]
    days = {Priority.LOW: 7, Priority.NORMAL: 3, Priority.URGENT: 1}[priority]
    who = f", signed by {signer.strip()}" if signer.strip() else ""
    avg = f", rated {sum(stars) / len(stars):.1f}" if stars else ""
    ep.world.update("orders", order_id, status=status, done=True)
    return f"{order_id} is {label}, ships within {days} days, slot {SLOTS[slot - 1]}{who}{avg}; note: {text or '-'}"


def handled():
    return _env("handled", [handle], lambda t: ("handle", {"order_id": t.data["order"]}))
