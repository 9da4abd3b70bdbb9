"""Procedural arithmetic problems with declared difficulty knobs.

Knobs, recorded in every task's metadata: ``level`` (1-6), ``digits`` (operand size), ``n_ops``
(number of operations), ``ops`` (operation mix) and ``word`` (a multi-step word problem).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LEVELS: dict[int, dict[str, object]] = {
    1: {"digits": 1, "n_ops": 1, "ops": "+", "word": False},
    2: {"digits": 2, "n_ops": 1, "ops": "+-", "word": False},
    3: {"digits": 2, "n_ops": 2, "ops": "+-", "word": False},
    4: {"digits": 2, "n_ops": 2, "ops": "+-*", "word": False},
    5: {"digits": 2, "n_ops": 2, "ops": "+-", "word": True},
    6: {"digits": 3, "n_ops": 3, "ops": "+-*", "word": False},
}


@dataclass(slots=True, frozen=True)
class Problem:
    question: str
    answer: int
    key: str  # the arithmetic itself: identical problems share it whatever the phrasing
    knobs: dict[str, object]


def _operand(rng: random.Random, digits: int, *, first: bool) -> int:
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo if first or digits > 1 else 1, 10**digits - 1)


_ARITH_TEMPLATES = (
    "What is {expr}?",
    "Compute {expr}.",
    "Calculate {expr}.",
    "Evaluate {expr}.",
)

_NAMES = ("Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kemal", "Lea")
_ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells")


def arithmetic(rng: random.Random, knobs: dict[str, object]) -> Problem:
    digits = int(knobs["digits"])  # type: ignore[call-overload]
    n_ops = int(knobs["n_ops"])  # type: ignore[call-overload]
    ops = str(knobs["ops"])
    nums = [_operand(rng, digits, first=i == 0) for i in range(n_ops + 1)]
    chosen = [rng.choice(ops) for _ in range(n_ops)]
    if "*" in chosen:  # keep products small enough to be reasonable by hand
        nums = [n if n < 100 else n % 100 or 7 for n in nums]
    expr = str(nums[0])
    for op, n in zip(chosen, nums[1:], strict=True):
        expr += f" {op} {n}"
    answer = int(eval(expr, {"__builtins__": {}}, {}))  # noqa: S307 - digits and + - * only
    question = rng.choice(_ARITH_TEMPLATES).format(expr=expr)
    return Problem(question, answer, f"arith:{expr}", knobs)


def word_problem(rng: random.Random, knobs: dict[str, object]) -> Problem:
    digits = int(knobs["digits"])  # type: ignore[call-overload]
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start = _operand(rng, digits, first=True)
    gain = _operand(rng, digits, first=False)
    loss = rng.randint(1, start + gain)
    kind = rng.randrange(3)
    if kind == 0:
        q = (f"{name} has {start} {item}. {name} gets {gain} more, then gives away {loss}. "
             f"How many {item} does {name} have now?")
        ans, key = start + gain - loss, f"word:{start}+{gain}-{loss}"
    elif kind == 1:
        q = (f"A box holds {start} {item}. Someone adds {gain} {item} and later takes out {loss}. "
             f"How many {item} are in the box?")
        ans, key = start + gain - loss, f"word:{start}+{gain}-{loss}"
    else:
        per = rng.randint(2, 9)
        bags = rng.randint(2, 9)
        q = (f"{name} buys {bags} bags with {per} {item} each and already had {start} {item}. "
             f"How many {item} does {name} have in total?")
        ans, key = bags * per + start, f"word:{bags}*{per}+{start}"
    return Problem(q, ans, key, knobs)


def make_problem(rng: random.Random, levels: tuple[int, ...]) -> Problem:
    level = rng.choice(levels)
    knobs = {"level": level, **LEVELS[level]}
    return word_problem(rng, knobs) if knobs["word"] else arithmetic(rng, knobs)
