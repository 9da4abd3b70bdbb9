"""Deliberately broken environments: each must fail one specific `envfoundry check`."""

import random
import time

from envfoundry import Environment, Message, Score, Task, ToolCall, World, tool


def _tasks(n=6, salt=None):
    # env and env_version are left out: each environment fills in its own name and version
    def tasks(split, seed):
        extra = salt() if salt else ""
        base = 1000 if split == "test" else 5000
        return [Task(split=split, prompt=f"say the number after {base + i}{extra}",
                     data={"i": base + i + 1}) for i in range(n)]
    return tasks


def _exact(g) -> Score:
    ok = g.final == str(g.task.data["i"])
    return Score(1.0 if ok else 0.0, {}, "ok" if ok else "wrong")


def _say(ep):
    return Message("assistant", str(ep.task.data["i"]))


def nondeterministic():
    # task content depends on the clock and the global RNG, not on the seed
    return Environment(name="nondet", tasks=_tasks(salt=lambda: f" ({random.random():.6f} {time.time_ns()})"),
                       graders=_exact, reference=_say)


def unsolvable():
    def ref(ep):
        return Message("assistant", "-1" if ep.task.data["i"] == 1004 else str(ep.task.data["i"]))
    return Environment(name="unsolvable", tasks=_tasks(), graders=_exact, reference=ref)


def crashing_grader():
    def grade(g):
        return Score(1.0 if int(g.final) == g.task.data["i"] else 0.0)  # int("") raises
    return Environment(name="crashgrader", tasks=_tasks(), graders=grade, reference=_say)


def mutating_grader():
    def grade(g):
        g.world_after.update("c", "x", graded=g.world_after.get("c", "x")["graded"] + 1)
        return _exact(g)
    return Environment(name="mutgrader", tasks=_tasks(), graders=grade, reference=_say,
                       world=lambda t: World({"c": {"x": {"graded": 0}}}))


@tool
def lookup(ep, code: str) -> str:
    """Look up an order by its numeric code."""
    return f"order {int(code) * 2}"  # crashes on non-numeric codes instead of a ToolError


def crashing_tool():
    return Environment(name="crashtool", tasks=_tasks(), tools=[lookup], graders=_exact,
                       reference=_say)


_SHARED: dict[str, int] = {}


@tool(writes=True)
def bump(ep) -> str:
    """Add one to the counter."""
    _SHARED[ep.task.id] = _SHARED.get(ep.task.id, 0) + 1  # module state, not the episode's world
    return f"counter is {_SHARED[ep.task.id]}"


def leaky():
    def ref(ep):
        done = any(m.role == "tool" for m in ep.messages)
        return _say(ep) if done else Message("assistant", tool_calls=[ToolCall("bump", {})])
    return Environment(name="leaky", tasks=_tasks(), tools=[bump], graders=_exact, reference=ref)
