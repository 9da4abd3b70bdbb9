"""Fair environments, written as a user would: `envfoundry audit` must find no `exploit` in any of
them. Some have a grader that is strict or lenient about details (whitespace, +-1): those are
findings of a kind that does not fail an audit by default. Each reference solution passes."""

import re

from envfoundry import Environment, Message, Score, Task, ToolCall, ToolError, World, tool
from envfoundry.core.seeding import rng_for

CATEGORIES = {
    "fruit": ["apple", "banana", "cherry", "mango", "pear", "plum", "grape", "lemon"],
    "animal": ["tiger", "horse", "otter", "camel", "zebra", "koala", "eagle", "shark"],
    "tool": ["hammer", "wrench", "chisel", "drill", "saw", "pliers", "spade", "rake"],
    "colour": ["red", "blue", "green", "purple", "orange", "yellow", "violet", "teal"],
}


def _tasks(name, make, n=12, splits=("train", "test")):
    """``make(rng) -> (prompt, data)``; n distinct tasks per split, a pure function of (split, seed)."""
    def tasks(split, seed):
        out: dict[str, Task] = {}
        i = 0
        while len(out) < n:
            prompt, data = make(rng_for(name, split, seed, i))
            t = Task(env=name, env_version="1", split=split, prompt=prompt, data=data)
            out.setdefault(t.id, t)
            i += 1
        return list(out.values())
    return tasks


def _say(key="answer"):
    def ref(ep):
        return Message("assistant", str(ep.task.data[key]))
    return ref


def _numbers(text):
    """The integers written in ``text`` (a run of more than 18 digits is not one)."""
    return [int(x) for x in re.findall(r"(?<!\d)-?\d{1,18}(?!\d)", text)]


# ------------------------------------------------------------------ multiple choice
def multiple_choice():
    """Which word is a fruit? Four option words, one per line; exact match on the right word.
    A copied option line is a blind guess that is right 1 time in 4: chance, not an exploit."""
    def make(rng):
        cat = rng.choice(sorted(CATEGORIES))
        right = rng.choice(CATEGORIES[cat])
        wrong = rng.sample([w for c, ws in sorted(CATEGORIES.items()) if c != cat for w in ws], 3)
        options = [right, *wrong]
        rng.shuffle(options)
        prompt = f"Which of these is a {cat}?\n" + "\n".join(options) + "\nReply with the word only."
        return prompt, {"answer": right, "options": options}

    def grade(g):
        ok = g.final.strip().strip(".").casefold() == g.task.data["answer"]
        return Score(1.0 if ok else 0.0, {}, "right" if ok else f"expected {g.task.data['answer']}")

    return Environment(name="choice", tasks=_tasks("choice", make), graders=grade, reference=_say())


def letter_choice():
    """A sum with four lettered options; exact match on the letter. Every blind guess of a letter
    (a constant, another task's answer) is right about 1 time in 4."""
    def make(rng):
        a, b = rng.randint(10, 60), rng.randint(10, 60)
        opts = [a + b, a + b + rng.choice([-10, 10]), a + b + rng.choice([-2, 2]), a * 2 + b + 1]
        opts = list(dict.fromkeys(opts))
        while len(opts) < 4:
            opts.append(opts[-1] + 7)
        rng.shuffle(opts)
        letters = "ABCD"
        prompt = f"What is {a} + {b}?\n" + "\n".join(f"{L}) {o}" for L, o in zip(letters, opts, strict=True))
        return prompt + "\nAnswer with the letter only.", {"answer": letters[opts.index(a + b)]}

    def grade(g):
        ok = g.final.strip().upper() == g.task.data["answer"]
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong letter")

    return Environment(name="letters", tasks=_tasks("letters", make, n=30), graders=grade, reference=_say())


def yes_no_skewed():
    """Is the number even? Three answers in four are "yes"; exact match on yes/no. A constant
    "yes" passes most tasks because it is the right answer there."""
    def make(rng):
        even = rng.random() < 0.75
        n = 2 * rng.randint(5, 500) + (0 if even else 1)
        return f"Is {n} an even number? Answer yes or no.", {"answer": "yes" if even else "no"}

    def grade(g):
        ok = g.final.strip().strip(".!").casefold() == g.task.data["answer"]
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")

    return Environment(name="parity", tasks=_tasks("parity", make, n=30), graders=grade, reference=_say())


# ------------------------------------------------------------------ free answers
def sentence_answer():
    """The reference reply is one sentence that ends with the result; the grader reads the last
    number. Text probes that do no work never end with the sum."""
    def make(rng):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        prompt = (f"Tom has {a} marbles and wins {b} more. How many marbles does he have now? "
                  "Explain in one sentence.")
        return prompt, {"a": a, "b": b, "answer": a + b}

    def ref(ep):
        d = ep.task.data
        return Message("assistant", f"He had {d['a']} and won {d['b']}, so he now has {d['answer']} marbles.")

    def grade(g):
        nums = _numbers(g.final)
        ok = bool(nums) and nums[-1] == g.task.data["answer"]
        return Score(1.0 if ok else 0.0, {}, "right" if ok else f"the last number is not {g.task.data['answer']}")

    return Environment(name="sentence", tasks=_tasks("sentence", make), graders=grade, reference=ref)


def _sum_task(rng):
    a, b = rng.randint(1000, 4999), rng.randint(1000, 4999)
    return f"What is {a} + {b}? Reply with the number only.", {"answer": a + b}


def partial_credit_below_pass():
    """Full marks for exactly the right number; 0.45 for a hedge that lists it among others
    ("2168, 2169"), never a pass. A no-work answer spam earns 0.45: a reward leak, not an exploit."""
    def grade(g):
        nums = _numbers(g.final)
        gold = g.task.data["answer"]
        if nums == [gold]:
            return Score(1.0, {}, "right")
        if gold in nums:
            return Score(0.45, {}, f"hedged: {len(nums)} numbers", passed=False)
        return Score(0.0, {}, "wrong")

    return Environment(name="hedged", tasks=_tasks("hedged", _sum_task), graders=grade, reference=_say())


def whitespace_strict():
    """Exact string match without stripping: correct answers with a trailing newline lose credit
    (a `strict` finding, not an exploit)."""
    def grade(g):
        ok = g.final == str(g.task.data["answer"])
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "not exactly the answer")

    return Environment(name="exact", tasks=_tasks("exact", _sum_task), graders=grade, reference=_say())


def tolerance():
    """One integer, accepted within +-1 of the sum (a `lenient` finding: an off-by-one answer
    keeps its credit; no probe that does no work gets near it)."""
    def grade(g):
        nums = _numbers(g.final)
        ok = len(nums) == 1 and abs(nums[0] - g.task.data["answer"]) <= 1
        return Score(1.0 if ok else 0.0, {}, "close enough" if ok else "wrong")

    return Environment(name="tolerant", tasks=_tasks("tolerant", _sum_task), graders=grade, reference=_say())


COUNTRIES = {"France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Japan": "Tokyo", "Peru": "Lima",
             "Kenya": "Nairobi", "Norway": "Oslo", "Chile": "Santiago"}
MADE_UP = ["Vorland", "Quendria", "Astovia", "Melnor", "Zarkand", "Ostrevia", "Pellucia", "Drumond"]


def abstain():
    """Capitals, and made-up countries whose right answer is "I don't know": a refusal that
    passes there is the right answer, not an exploit."""
    def make(rng):
        if rng.random() < 0.4:
            return f"What is the capital of {rng.choice(MADE_UP)}? Say I don't know if it does not exist.", {
                "answer": "I don't know"}
        c = rng.choice(sorted(COUNTRIES))
        return f"What is the capital of {c}? Say I don't know if it does not exist.", {"answer": COUNTRIES[c]}

    def grade(g):
        ok = g.final.strip().rstrip(".").casefold() == g.task.data["answer"].casefold()
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")

    return Environment(name="abstain", tasks=_tasks("abstain", make, n=16), graders=grade, reference=_say())


# ------------------------------------------------------------------ tools
STATUSES = ["shipped", "pending", "cancelled"]


@tool
def get_order(ep, order_id: str) -> dict:
    """Look up an order by id."""
    rec = ep.world.get("orders", order_id.strip())
    if rec is None:
        raise ToolError(f"no order {order_id!r}")
    return {"order_id": order_id.strip(), **rec}


def lookup():
    """What is the status of an order? The agent must look it up; the answer is one status word."""
    def make(rng):
        oid = f"O-{rng.randint(1000, 9999)}"
        return f"What is the status of order {oid}? Reply with the status only.", {
            "order": oid, "answer": rng.choice(STATUSES), "items": rng.randint(1, 5)}

    def world(task):
        d = task.data
        return World({"orders": {d["order"]: {"status": d["answer"], "items": d["items"]},
                                 "O-0001": {"status": "pending", "items": 1}}})

    def ref(ep):
        if not any(m.role == "tool" for m in ep.messages):
            return Message("assistant", "", [ToolCall("get_order", {"order_id": ep.task.data["order"]})])
        return Message("assistant", ep.task.data["answer"])

    def grade(g):
        ok = g.final.strip().casefold() == g.task.data["answer"]
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong status")

    return Environment(name="lookup", tasks=_tasks("lookup", make, n=20), tools=[get_order], world=world,
                       graders=grade, reference=ref, max_turns=4)


def refund_desk(internal: bool = False):
    """Refund the difference between what a ticket's customer was charged and the listed price;
    graded on the world. With ``internal``, the ticket record also holds the expected refund in an
    internal field (hostile: see tests/envs/hostile.py)."""
    def make(rng):
        tid = f"T-{rng.randint(1000, 9999)}"
        price = rng.randint(20, 200) + 0.5 * rng.randint(0, 1)
        charged = price + rng.randint(3, 40)
        return (f"The customer on ticket {tid} was charged more than the listed price. Look the ticket up and "
                "refund the difference with issue_refund."), {"ticket": tid, "price": price, "charged": charged}

    def world(task):
        d = task.data
        rec = {"ticket_id": d["ticket"], "customer": "Ann Lee", "price": d["price"], "charged": d["charged"]}
        if internal:
            rec["_internal"] = {"expected_refund": round(d["charged"] - d["price"], 2)}
        return World({"tickets": {d["ticket"]: rec, "T-0001": {"ticket_id": "T-0001", "customer": "Bo Chan",
                                                                 "price": 10.0, "charged": 10.0}},
                      "refunds": {}})

    @tool
    def get_ticket(ep, ticket_id: str) -> dict:
        """Look up a support ticket."""
        rec = ep.world.get("tickets", ticket_id.strip())
        if rec is None:
            raise ToolError(f"no ticket {ticket_id!r}")
        return dict(rec)

    @tool(writes=True)
    def issue_refund(ep, ticket_id: str, amount: float) -> str:
        """Refund `amount` to the customer of a ticket."""
        if ep.world.get("tickets", ticket_id.strip()) is None:
            raise ToolError(f"no ticket {ticket_id!r}")
        if amount <= 0:
            raise ToolError("amount must be positive")
        ep.world.upsert("refunds", ticket_id.strip(), {"amount": amount})
        return f"refunded {amount} on {ticket_id}"

    def ref(ep):
        seen = [m for m in ep.messages if m.role == "tool"]
        d = ep.task.data
        if not seen:
            return Message("assistant", "", [ToolCall("get_ticket", {"ticket_id": d["ticket"]})])
        if len(seen) == 1:
            return Message("assistant", "", [ToolCall("issue_refund", {"ticket_id": d["ticket"],
                                                                       "amount": round(d["charged"] - d["price"], 2)})])
        return Message("assistant", "Refunded the difference.")

    def grade(g):
        d = g.task.data
        refunds = dict(g.world_after.rows("refunds"))
        got = refunds.get(d["ticket"], {}).get("amount")
        ok = len(refunds) == 1 and got is not None and abs(got - (d["charged"] - d["price"])) < 0.005
        return Score(1.0 if ok else 0.0, {}, f"refunded {got}" if got is not None else "no refund")

    name = "refunds-internal" if internal else "refunds"
    return Environment(name=name, tasks=_tasks(name, make), tools=[get_ticket, issue_refund], world=world,
                       graders=grade, reference=ref, max_turns=5)


FAIR = [multiple_choice, letter_choice, yes_no_skewed, sentence_answer, partial_credit_below_pass, whitespace_strict,
        tolerance, abstain, lookup, refund_desk]
