"""A complete environment in one file: reach a target number with `add` and `submit`.

Run it:  envfoundry run --env examples/counter_env.py:make_env --model scripted:oracle --limit 20
"""

from envfoundry import Environment, Message, ProceduralTasks, Score, Task, ToolCall, ToolError, World, tool


def _generate(rng):
    """One task from a seeded RNG: (problem key, build(split) -> Task)."""
    start, target = rng.randint(0, 20), rng.randint(0, 40)
    target += target >= start  # never already solved: doing nothing must not pass
    return f"{start}->{target}", lambda split: Task(
        split=split, prompt=f"The counter shows {start}. Use the tools to make it show {target}, then submit.",
        world={"start": start}, data={"target": target}, metadata={"difficulty": abs(target - start)},
    )


@tool(writes=True)
def add(ep, amount: int) -> str:
    """Add `amount` (between -10 and 10) to the counter."""
    if not -10 <= amount <= 10:
        raise ToolError(f"amount must be between -10 and 10, got {amount}")
    ep.world.set_value("counter", ep.world.value("counter") + amount)
    return f"the counter shows {ep.world.value('counter')}"


@tool
def submit(ep) -> str:
    """Say you are done."""
    ep.finish()
    return "submitted"


def grade(g) -> Score:
    value, target = g.world_after.value("counter"), g.task.data["target"]
    return Score(1.0 if value == target else 0.0, {"value": value}, f"counter {value}, target {target}")


def solve(ep) -> Message:
    """The reference solution: step towards the target, then submit."""
    gap = ep.task.data["target"] - ep.world.value("counter")
    call = ToolCall("add", {"amount": max(-10, min(10, gap))}) if gap else ToolCall("submit", {})
    return Message("assistant", tool_calls=[call])


def make_env() -> Environment:
    return Environment(
        name="counter",
        version="1.0",
        description="Reach a target number with add() and submit().",
        tasks=ProceduralTasks.source(_generate, sizes={"train": 400, "test": 100}),
        tools=[add, submit],
        world=lambda task: World(values={"counter": task.world["start"]}),
        graders=grade,
        reference=solve,
        max_turns=12,
    )
