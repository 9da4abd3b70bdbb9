"""A complete environment in one file: reach a target number with `add` and `submit`.

Run it:  envfoundry run --env examples/counter_env.py:make_env --model scripted:oracle --limit 20
"""

import random

from envfoundry import Environment, Message, Score, Task, ToolCall, ToolError, World, tool
from envfoundry.core.procedural import ProceduralTasks


def _generate(rng: random.Random):
    """One task from a seeded RNG: (problem key, build(split) -> Task)."""
    start, target = rng.randint(0, 20), rng.randint(0, 40)
    target += target >= start  # never already solved: doing nothing must not pass
    return f"{start}->{target}", lambda split: Task(
        env="counter", env_version="1.0", split=split,
        prompt=f"The counter shows {start}. Use the tools to make it show {target}, then submit.",
        world={"start": start}, data={"target": target},
        metadata={"difficulty": abs(target - start)},
    )


@tool(writes=True)
def add(ep, amount: int) -> str:
    """Add `amount` (between -10 and 10) to the counter."""
    if not -10 <= amount <= 10:
        raise ToolError(f"amount must be between -10 and 10, got {amount}")
    value = ep.world.get("counter", "c")["value"] + amount
    ep.world.update("counter", "c", value=value)
    return f"the counter shows {value}"


@tool
def submit(ep) -> str:
    """Say you are done."""
    ep.finish()
    return "submitted"


def grade(g) -> Score:
    value = g.world_after.get("counter", "c")["value"]
    target = g.task.data["target"]
    ok = value == target
    return Score(1.0 if ok else 0.0, {"value": value}, f"counter {value}, target {target}")


def solve(ep) -> Message:
    """The reference solution: step towards the target, then submit."""
    gap = ep.task.data["target"] - ep.world.get("counter", "c")["value"]
    if gap == 0:
        return Message("assistant", tool_calls=[ToolCall("submit", {})])
    return Message("assistant", tool_calls=[ToolCall("add", {"amount": max(-10, min(10, gap))})])


def make_env() -> Environment:
    return Environment(
        name="counter",
        version="1.0",
        description="Reach a target number with add() and submit().",
        tasks=lambda split, seed: ProceduralTasks(
            _generate, split=split, size={"train": 400, "test": 100}[split], seed=seed,
            split_weights={"train": 4, "test": 1},
        ),
        tools=[add, submit],
        world=lambda task: World({"counter": {"c": {"value": task.world["start"]}}}),
        graders=grade,
        reference=solve,
        max_turns=12,
    )
