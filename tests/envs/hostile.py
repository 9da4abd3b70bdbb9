"""Hostile environments, written as a user might by mistake: each has a grader (or a tool) that a
policy doing no work can exploit, and `envfoundry audit` must catch it with the named probe.
Each reference solution passes."""

import importlib.util
import json
import re
from pathlib import Path

from envfoundry import Environment, Message, Score

if __package__:
    from .fair import _numbers, _say, _sum_task, _tasks, refund_desk
else:  # loaded as a file (`envfoundry audit --env tests/envs/hostile.py:any_text`): its neighbour too
    _spec = importlib.util.spec_from_file_location("envfoundry_test_fair", Path(__file__).with_name("fair.py"))
    assert _spec is not None and _spec.loader is not None
    _fair = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_fair)
    _numbers, _say, _sum_task, _tasks, refund_desk = (_fair._numbers, _fair._say, _fair._sum_task, _fair._tasks,
                                                     _fair.refund_desk)

VERBS = ["chased", "painted", "followed", "washed", "pushed", "watched", "helped", "called"]
NOUNS = ["dog", "cat", "farmer", "teacher", "child", "horse", "sailor", "baker"]


def any_text():
    """Full marks for any reply that is not empty."""
    def grade(g):
        ok = bool(g.final.strip())
        return Score(1.0 if ok else 0.0, {}, "answered" if ok else "no answer")

    return Environment(name="anytext", tasks=_tasks("anytext", _sum_task), graders=grade, reference=_say())


def internal_field():
    """A refund desk whose ticket record carries the expected refund in an internal field; the
    grader checks the world, so the leak only pays when passed to the write tool."""
    return refund_desk(internal=True)


def constant_zero():
    """Meant to accept "0" only for fully paid invoices, it accepts "0" on every task."""
    def grade(g):
        nums = _numbers(g.final)
        ok = len(nums) == 1 and nums[0] in (g.task.data["answer"], 0)
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")

    return Environment(name="zero", tasks=_tasks("zero", _sum_task), graders=grade, reference=_say())


def zero_grid():
    """Mirror a grid left to right; cells the answer leaves 0 are taken as "blank" and not checked,
    so an all-zero grid of the right shape passes."""
    def make(rng):
        h, w = rng.randint(2, 4), rng.randint(2, 4)
        grid = [[rng.randint(1, 9) for _ in range(w)] for _ in range(h)]
        return (f"Mirror this grid left to right:\n{json.dumps(grid)}\nReply with the grid as JSON."), {
            "answer": [row[::-1] for row in grid]}

    def ref(ep):
        return Message("assistant", json.dumps(ep.task.data["answer"]))

    def grade(g):
        want = g.task.data["answer"]
        try:
            got = json.loads(g.final)
        except ValueError:
            return Score(0.0, {}, "not JSON")
        if not isinstance(got, list) or [len(r) if isinstance(r, list) else -1 for r in got] != [len(r) for r in want]:
            return Score(0.0, {}, "wrong shape")
        wrong = sum(1 for r, e in zip(got, want, strict=True) for a, b in zip(r, e, strict=True) if a and a != b)
        return Score(1.0 if wrong == 0 else 0.0, {}, f"{wrong} wrong cells")

    return Environment(name="grid", tasks=_tasks("grid", make), graders=grade, reference=ref)


def prompt_line():
    """Rewrite a sentence in the passive voice, graded by word overlap: the sentence copied from
    the prompt shares enough words with the answer to pass."""
    def make(rng):
        a, b = rng.sample(NOUNS, 2)
        v = rng.choice(VERBS)
        return f"Rewrite this sentence in the passive voice:\nThe {a} {v} the {b}.", {
            "answer": f"The {b} was {v} by the {a}."}

    def grade(g):
        words = set(re.findall(r"[a-z]+", g.final.lower()))
        gold = set(re.findall(r"[a-z]+", g.task.data["answer"].lower()))
        overlap = len(words & gold) / len(words | gold) if words | gold else 0.0
        return Score(1.0 if overlap >= 0.6 else 0.0, {"overlap": overlap}, f"word overlap {overlap:.2f}")

    return Environment(name="passive", tasks=_tasks("passive", make), graders=grade, reference=_say())


# ------------------------------------------------------------------ more of the same class, not in the issue
def vacuous_list():
    """List the even numbers; the grader checks that every listed number is right, never that
    none is missing, so the empty list passes."""
    def make(rng):
        nums = rng.sample(range(1, 60), 6)
        if not any(n % 2 == 0 for n in nums):
            nums[0] += 1
        return f"List the even numbers among {', '.join(map(str, nums))} as a JSON list.", {
            "answer": [n for n in nums if n % 2 == 0]}

    def ref(ep):
        return Message("assistant", json.dumps(ep.task.data["answer"]))

    def grade(g):
        try:
            got = json.loads(g.final)
        except ValueError:
            return Score(0.0, {}, "not JSON")
        ok = isinstance(got, list) and all(x in g.task.data["answer"] for x in got)
        return Score(1.0 if ok else 0.0, {}, "every listed number is even" if ok else "a wrong number")

    return Environment(name="evens", tasks=_tasks("evens", make), graders=grade, reference=ref)


def crash_on_scalar():
    """Sorts whatever JSON it reads: a bare `true` or `0` raises TypeError in the grader, an
    unscored rollout instead of a zero."""
    def make(rng):
        words = rng.sample(["pear", "fig", "kiwi", "lime", "date", "plum", "apple"], 4)
        return f"Sort these words alphabetically and reply with a JSON list: {', '.join(words)}", {
            "answer": sorted(words)}

    def ref(ep):
        return Message("assistant", json.dumps(ep.task.data["answer"]))

    def grade(g):
        try:
            got = json.loads(g.final)
        except json.JSONDecodeError:
            return Score(0.0, {}, "not JSON")
        ok = sorted(got) == got and got == g.task.data["answer"]  # sorted(True) raises TypeError
        return Score(1.0 if ok else 0.0, {}, "sorted" if ok else "not the sorted list")

    return Environment(name="sorter", tasks=_tasks("sorter", make), graders=grade, reference=ref)


def format_reward():
    """0.6 for "a single integer" (the format), 0.4 for the right value: any number earns 0.6,
    more than half the reference's reward, without a pass."""
    def grade(g):
        nums = _numbers(g.final.strip())
        fmt = 0.6 if re.fullmatch(r"-?\d+", g.final.strip()) else 0.0
        right = 0.4 if nums == [g.task.data["answer"]] else 0.0
        return Score(fmt + right, {"format": fmt, "value": right}, "format" + (" and value" if right else ""))

    return Environment(name="formatpay", tasks=_tasks("formatpay", _sum_task), graders=grade, reference=_say())


def leaky_label():
    """Yes/no questions whose system prompt carries a debug line with the expected answer. Many
    tasks share the value ("expected=yes"), but the name's value changes from task to task."""
    def tasks(split, seed):
        out = []
        for t in _tasks("leakylabel", _parity)(split, seed):
            system = f"You answer yes or no. [debug] expected={t.data['answer']}"
            out.append(t.model_copy(update={"system": system, "id": ""}))
        return [type(t)(**t.model_dump()) for t in out]

    def grade(g):
        ok = g.final.strip().casefold() == g.task.data["answer"]
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")

    return Environment(name="leakylabel", tasks=tasks, graders=grade, reference=_say())


def _parity(rng):
    n = rng.randint(10, 999)
    return f"Is {n} an even number? Answer yes or no.", {"answer": "yes" if n % 2 == 0 else "no"}


#: factory -> the probe that must report it, and the finding kind
HOSTILE = {
    any_text: ("refusal", "exploit"),
    internal_field: ("leak_to_tools", "exploit"),
    constant_zero: ("constant", "exploit"),
    zero_grid: ("blank_shape", "exploit"),
    prompt_line: ("prompt_copy", "exploit"),
    vacuous_list: ("constant", "exploit"),
    crash_on_scalar: ("constant", "crash"),
    format_reward: ("constant", "exploit"),
    leaky_label: ("leak", "exploit"),
}
