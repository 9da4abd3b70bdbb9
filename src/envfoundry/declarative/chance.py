"""Functions of chance, available only in generator steps: each is called with the task's seeded
``random.Random`` first, so a generated world is a pure function of its seed."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .errors import ExprError
from .functions import integer, num, seq


def r_randint(rng: random.Random, a: Any, b: Any) -> int:
    lo, hi = integer(a), integer(b)
    if lo > hi:
        raise ExprError(f"randint: the low end {lo} is above the high end {hi}")
    return rng.randint(lo, hi)


def r_uniform(rng: random.Random, a: Any, b: Any) -> float:
    return rng.uniform(num(a), num(b))


def r_choice(rng: random.Random, items: Any) -> Any:
    s = seq(items)
    if not s:
        raise ExprError("choice from an empty list")
    return rng.choice(list(s))


def r_weighted(rng: random.Random, items: Any, weights: Any) -> Any:
    s, w = list(seq(items)), [num(x, "numeric weights") for x in seq(weights)]
    if not s or len(s) != len(w):
        raise ExprError(f"weighted needs as many weights as items (got {len(s)} items, {len(w)} weights)")
    if any(x < 0 for x in w) or not sum(w) > 0:
        raise ExprError("weighted needs weights >= 0, not all 0")
    return rng.choices(s, weights=w, k=1)[0]


def r_sample(rng: random.Random, items: Any, k: Any) -> list[Any]:
    s, n = list(seq(items)), integer(k)
    if not 0 <= n <= len(s):
        raise ExprError(f"sample: cannot take {n} of {len(s)} items")
    return rng.sample(s, n)


def r_shuffle(rng: random.Random, items: Any) -> list[Any]:
    s = list(seq(items))
    rng.shuffle(s)
    return s


def r_chance(rng: random.Random, p: Any) -> bool:
    return rng.random() < num(p)



#: functions of chance: available only in generator steps, called with the task's seeded RNG first
RANDOM: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "randint": (r_randint, 2, 2),
    "uniform": (r_uniform, 2, 2),
    "choice": (r_choice, 1, 1),
    "weighted": (r_weighted, 2, 2),
    "sample": (r_sample, 2, 2),
    "shuffle": (r_shuffle, 1, 1),
    "chance": (r_chance, 1, 1),
}


__all__ = ["RANDOM"]
