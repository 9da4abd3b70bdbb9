"""The engine's hook for asynchronous environments (remote servers, browsers): it awaits their
reset, step, grade and close, overlaps their waits, and never scores their failures."""

import asyncio

import pytest

from envfoundry import Environment, Episode, Message, Score, Task, World
from envfoundry.policies import OraclePolicy
from envfoundry.rollout import RolloutConfig, run_all, run_rollout


class _Ep(Episode):
    __slots__ = ("log",)

    async def astep(self, action):
        self.log.append("step")
        env = self.env
        env.in_flight += 1
        env.most_in_flight = max(env.most_in_flight, env.in_flight)
        await asyncio.sleep(0.01)  # an I/O wait: other rollouts must run meanwhile
        env.in_flight -= 1
        if self.env.fail_step:
            raise ConnectionResetError("the server went away")
        return self.step(action)

    async def aclose(self):
        self.log.append("close")
        if self.env.fail_close:
            raise RuntimeError("close failed")


class _AsyncEnv(Environment):
    asynchronous = True

    def __init__(self, *, fail_step=False, fail_grade=False, fail_close=False):
        task = Task(env="a", env_version="1", split="test", prompt="go", answer="x")
        super().__init__(name="a", version="1", tasks=lambda s, seed: [task],
                         world=lambda t: World({"t": {"r": {"v": 1}}}),
                         graders=lambda g: Score(1.0), reference=lambda ep: Message("assistant", "x"))
        self.fail_step, self.fail_grade, self.fail_close = fail_step, fail_grade, fail_close
        self.logs: list[list[str]] = []
        self.in_flight = self.most_in_flight = 0

    async def areset(self, task, *, seed):
        await asyncio.sleep(0)
        ep = _Ep(self, task, seed, self._world(task))
        ep.log = []
        self.logs.append(ep.log)
        ep.world.update("t", "r", v=2)
        return ep

    async def agrade(self, ep):
        ep.log.append("grade")
        if self.fail_grade == "connection":
            raise ConnectionResetError("connection lost while grading")
        if self.fail_grade:
            raise ValueError("grader on the far side failed")
        return self.grade(ep)


def _one(env):
    return asyncio.run(run_rollout(env, env.tasks("test")[0], 0, OraclePolicy(), RolloutConfig()))


def test_async_episode_is_awaited_graded_and_closed_once():
    env = _AsyncEnv()
    rec = _one(env)
    assert rec["outcome"] == "completed" and rec["score"] == 1.0
    assert env.logs == [["step", "grade", "close"]]
    assert rec["world_diff"] and rec["world_diff"][0]["table"] == "t"


@pytest.mark.parametrize("kw,outcome,needle", [
    ({"fail_step": True}, "env_error", "server went away"),
    ({"fail_grade": True}, "grader_error", "far side failed"),
    ({"fail_grade": "connection"}, "env_error", "connection lost while grading"),
])
def test_async_failures_are_typed_never_scored_and_still_closed(kw, outcome, needle):
    env = _AsyncEnv(**kw)
    rec = _one(env)
    assert rec["outcome"] == outcome and rec["score"] is None and needle in rec["error"]
    assert env.logs[0][-1] == "close"


def test_a_failing_close_does_not_change_the_record():
    rec = _one(_AsyncEnv(fail_close=True))
    assert rec["outcome"] == "completed" and rec["score"] == 1.0


def test_async_rollouts_overlap_their_waits():
    env = _AsyncEnv()
    jobs = iter([(env.tasks("test")[0], s) for s in range(20)])
    recs: list[dict] = []
    asyncio.run(run_all(env, jobs, OraclePolicy(), RolloutConfig(concurrency=20), recs.append))
    assert len(recs) == 20 and all(r["passed"] for r in recs)
    assert env.most_in_flight == 20  # every rollout waited at once: the engine never blocked on a step
