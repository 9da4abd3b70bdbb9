"""Graders whose score for a trajectory depends on what they graded before: each must fail
`envfoundry check`'s ``grader_pure``, which names the grader. ``memo_gold`` caches and reads
module-level data in ways that are pure, and must pass every check.

The frame: say the sum of two numbers; a first grader checks the format (digits only), a second
one the value.
"""

import functools
import re

from envfoundry import Environment, Message, Score, Task
from envfoundry.core.seeding import rng_for


def _tasks(name):
    def tasks(split, seed):
        out = []
        for i in range(6):
            rng = rng_for(name, split, seed, i)
            a, b = rng.randint(100, 499), rng.randint(100, 499)
            out.append(Task(env=name, env_version="1", split=split, prompt=f"What is {a} + {b}? Digits only.",
                            data={"a": a, "b": b}))
        return out
    return tasks


def digits_only(g) -> Score:
    ok = bool(re.fullmatch(r"\d+", g.final.strip()))
    return Score(1.0 if ok else 0.0, {}, "digits" if ok else "not digits only")


def _right(g) -> bool:
    return g.final.strip() == str(g.task.data["a"] + g.task.data["b"])


def _env(name, value_grader):
    return Environment(name=name, tasks=_tasks(name), graders=[digits_only, value_grader],
                       reference=lambda ep: Message("assistant", str(ep.task.data["a"] + ep.task.data["b"])))


# ------------------------------------------------------------- a global counter
_GRADED = [0]


def value_with_warmup(g) -> Score:
    """Half credit for a wrong answer on every other grading ("be lenient while warming up")."""
    _GRADED[0] += 1
    if _right(g):
        return Score(1.0, {}, "right")
    return Score(0.5 if _GRADED[0] % 2 else 0.0, {}, "wrong")


def counter_grader():
    return _env("countergrader", value_with_warmup)


# ------------------------------------------------------------- results cached per task
_RESULTS: dict[str, Score] = {}


def value_cached(g) -> Score:
    """Grading is "expensive", so each task's score is kept: every later trajectory gets the first one's."""
    if g.task.id not in _RESULTS:
        _RESULTS[g.task.id] = Score(1.0 if _right(g) else 0.0, {}, "right" if _right(g) else "wrong")
    return _RESULTS[g.task.id]


def cached_per_task():
    return _env("cachedgrader", value_cached)


# ------------------------------------------------------------- a mutable default argument as memory
def value_no_repeats(g, _seen=set()) -> Score:  # noqa: B006 - the bug under test
    """Anti-spam: an answer this grader has seen before gets half credit."""
    ok, again = _right(g), g.final.strip() in _seen
    _seen.add(g.final.strip())
    return Score((0.5 if again else 1.0) if ok else 0.0, {}, "right" if ok else "wrong", passed=ok)


def default_memory():
    return _env("memorygrader", value_no_repeats)


# ------------------------------------------------------------- the last answer graded
_LAST = {"answer": None}


def value_consistent(g) -> Score:
    """Partial credit for a wrong answer that agrees with the previous answer graded (meant: the
    previous sample of a group)."""
    same = g.final.strip() == _LAST["answer"]
    _LAST["answer"] = g.final.strip()
    if _right(g):
        return Score(1.0, {}, "right")
    return Score(0.3 if same else 0.0, {}, "wrong but consistent" if same else "wrong")


def last_answer():
    return _env("lastgrader", value_consistent)


# ------------------------------------------------------------- fair
TOLERANCE = {"exact": 0}  # a read-only module constant


@functools.cache
def _gold(task_id: str, a: int, b: int) -> int:
    return a + b  # cached per task, but a pure function of the task


def value_memo(g) -> Score:
    text = g.final.strip()
    ok = text.isdigit() and abs(int(text) - _gold(g.task.id, g.task.data["a"], g.task.data["b"])) <= TOLERANCE["exact"]
    return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")


def memo_gold():
    return _env("memogold", value_memo)
