"""Task sources that are not a pure function of (split, seed), in ways a quick regeneration in the
same process and the same second does not show: each must fail `envfoundry check`'s
``determinism`` (its fresh-process part). ``seeded_date`` is the fair way to put a date in a prompt.
"""

import datetime
import time

from envfoundry import Environment, Message, Score, Task
from envfoundry.core.seeding import rng_for

FRUIT = ("apple", "pear", "plum", "fig", "kiwi", "lime", "date", "quince")


def _env(name, make):
    """``make(rng, i) -> (prompt, system)``; the answer is always the sum in the prompt."""
    def tasks(split, seed):
        out = []
        for i in range(6):
            rng = rng_for(name, split, seed, i)
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            prompt, system = make(rng, i)
            out.append(Task(env=name, env_version="1", split=split, prompt=f"{prompt} What is {a} + {b}?",
                            system=system, data={"answer": a + b}))
        return out

    def grade(g):
        ok = g.final.strip() == str(g.task.data["answer"])
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")

    return Environment(name=name, tasks=tasks, graders=grade,
                       reference=lambda ep: Message("assistant", str(ep.task.data["answer"])))


def clock_prompt():
    """The time of day in UTC, to the second, in the prompt (no time zone changes it: only a later
    second does)."""
    return _env("clock", lambda rng, i: (f"[{time.strftime('%H:%M:%S', time.gmtime())} UTC]", None))


def today_system():
    """Today's date in the system prompt: the same all day long, in one time zone."""
    return _env("today", lambda rng, i: ("", f"You are a calculator. Today is {datetime.date.today():%A %d %B %Y}."))


def set_order():
    """A set of words joined in iteration order, which depends on the process's string-hash seed."""
    return _env("setorder", lambda rng, i: (f"Fruit: {', '.join(set(rng.sample(FRUIT, 6)))}.", None))


def seeded_date():
    """Fair: a date drawn from the task's own seeded RNG."""
    def make(rng, i):
        day = datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randint(0, 365))
        return "", f"You are a calculator. Today is {day:%A %d %B %Y}."

    return _env("seeddate", make)
