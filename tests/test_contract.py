"""The core contract: tasks, tools, episodes, scores, outcomes."""

import asyncio

import pytest

from envfoundry import (
    Environment,
    Message,
    Outcome,
    Score,
    Task,
    ToolCall,
    ToolError,
    World,
    load,
    tool,
)
from envfoundry.core.tools import make_tool
from envfoundry.policies import OraclePolicy
from envfoundry.rollout import RolloutConfig, run_rollout


def test_task_id_is_content_hash():
    a = Task(env="e", env_version="1", split="test", prompt="p", data={"x": 1})
    b = Task(env="e", env_version="1", split="train", prompt="p", data={"x": 1},
             metadata={"difficulty": 3})
    c = Task(env="e", env_version="2", split="test", prompt="p", data={"x": 1})
    d = Task(env="e", env_version="1", split="test", prompt="p", data={"x": 2})
    assert a.id == b.id  # split and metadata describe, they do not define
    assert len({a.id, c.id, d.id}) == 3
    with pytest.raises(ValueError, match="content hash"):
        Task(env="e", env_version="1", split="test", prompt="p", id="deadbeef")


def test_score_range_and_passed():
    assert Score(1.0).passed and not Score(0.5).passed
    assert Score(0.5, passed=True).passed
    with pytest.raises(ValueError):
        Score(1.5)


@tool(writes=True)
def checkout(ep, quantity: int, note: str = "") -> str:
    """Buy."""
    return f"bought {quantity}"


def test_tool_schema_from_type_hints():
    s = checkout.schema()
    assert s["function"]["name"] == "checkout"
    params = s["function"]["parameters"]
    assert params["properties"]["quantity"]["type"] == "integer"
    assert params["required"] == ["quantity"]
    assert checkout.writes is True


def test_tool_needs_type_hints():
    def bad(ep, x):
        return x
    with pytest.raises(TypeError, match="type hint"):
        make_tool(bad)


def _env(**kw):
    return Environment(
        name="t", tasks=lambda split, seed: [Task(env="t", env_version="1", split=split, prompt="go")],
        tools=[checkout], graders=lambda g: Score(1.0), **kw,
    )


@pytest.mark.parametrize(
    "call,expected",
    [
        (ToolCall("checkout", {"quantity": "two"}), "tool 'checkout' expects `quantity: int`, got 'two'"),
        (ToolCall("checkout", {}), "missing argument `quantity: int`"),
        (ToolCall("checkout", {"quantity": 1, "colour": "red"}), "unknown argument `colour`"),
        (ToolCall("checkout", '{"quantity": 1'), "not valid JSON"),
        (ToolCall("checkout", "[1]"), "must be a JSON object"),
        (ToolCall("fly", {}), "unknown tool 'fly' (tools: checkout)"),
    ],
)
def test_bad_tool_call_is_observation(call, expected):
    env = _env()
    ep = env.reset(env.tasks("test")[0], seed=1)
    res = ep.step(Message("assistant", tool_calls=[call]))
    assert not res.terminated
    assert res.observation[0].role == "tool"
    assert expected in res.observation[0].content


def test_good_tool_call_and_termination():
    env = _env(max_turns=2)
    ep = env.reset(env.tasks("test")[0], seed=1)
    r1 = ep.step(Message("assistant", tool_calls=[ToolCall("checkout", '{"quantity": 2}')]))
    assert r1.observation[0].content == "bought 2" and not r1.terminated and not r1.truncated
    r2 = ep.step(Message("assistant", tool_calls=[ToolCall("checkout", {"quantity": 3})]))
    assert r2.truncated and not r2.terminated  # turn limit, Gymnasium-style flags
    with pytest.raises(RuntimeError):
        ep.step(Message("assistant", "x"))


def test_final_message_terminates():
    env = _env()
    ep = env.reset(env.tasks("test")[0], seed=1)
    r = ep.step(Message("assistant", "done"))
    assert r.terminated and not r.truncated


def test_tool_error_is_observation_not_crash():
    @tool
    def fragile(ep, n: int) -> str:
        """x"""
        raise ToolError("out of stock")
    env = Environment(name="t", tasks=lambda s, seed: [], tools=[fragile], graders=lambda g: Score(0))
    ep = env.reset(Task(env="t", env_version="1", split="test", prompt="p"), seed=0)
    assert ep.step(Message("assistant", tool_calls=[ToolCall("fragile", {"n": 1})])).observation[
        0].content == "error: out of stock"


def test_episodes_fork_world():
    task = Task(env="t", env_version="1", split="test", prompt="p")
    base = World({"t": {"a": {"v": 1}}})
    env = Environment(name="t", tasks=lambda s, seed: [task], world=lambda t: base,
                      graders=lambda g: Score(1.0))
    e1, e2 = env.reset(task, seed=1), env.reset(task, seed=2)
    e1.world.update("t", "a", v=2)
    assert e2.world.get("t", "a")["v"] == 1 and base.get("t", "a")["v"] == 1


def _rollout(env, task):
    return asyncio.run(run_rollout(env, task, 0, OraclePolicy(), RolloutConfig()))


def test_errors_are_typed_never_scored():
    from tests.envs import slow

    for factory, outcome, needle in [
        (slow.make_buggy_tool, Outcome.ENV_ERROR, "ZeroDivisionError"),
        (slow.make_buggy_grader, Outcome.GRADER_ERROR, "grader bug"),
        (slow.make_buggy_reset, Outcome.ENV_ERROR, "world factory bug"),
    ]:
        env = factory()
        rec = _rollout(env, env.tasks("test")[0])
        assert rec["outcome"] == outcome, rec
        assert rec["score"] is None and rec["passed"] is None
        assert needle in rec["error"] and "Traceback" in rec["error"]


def test_policy_exception_is_policy_error():
    class Broken:
        name = "broken"
        async def act(self, ep):
            raise ConnectionError("server gone")
    env = load("math")
    rec = asyncio.run(run_rollout(env, env.tasks("test")[0], 0, Broken(), RolloutConfig()))
    assert rec["outcome"] == "policy_error" and rec["score"] is None
    assert "server gone" in rec["error"]


def test_timeout_while_waiting_for_policy():
    class Slow:
        name = "slow"
        async def act(self, ep):
            await asyncio.sleep(10)
    env = load("math")
    rec = asyncio.run(run_rollout(env, env.tasks("test")[0], 0, Slow(), RolloutConfig(timeout_s=0.05)))
    assert rec["outcome"] == "policy_error" and "timed out" in rec["error"]


def test_rollout_config_validates():
    for kw in ({"samples": 0}, {"concurrency": 0}, {"timeout_s": 0}, {"max_turns": 0}):
        with pytest.raises(ValueError):
            RolloutConfig(**kw)
