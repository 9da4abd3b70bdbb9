"""Engine benchmarks: scripted steps/s on math and per-step overhead (figures, not assertions).

    python bench/bench_engine.py [--tasks 2000] [--samples 8]

Prints, measured in this run:
- math with scripted:oracle through the engine, records discarded (engine + env + grader) and
  through the full run store (JSONL on disk);
- per-step engine+env overhead on a long-episode environment whose tool and policy do nothing:
  the same loop driven directly (env.reset/step in a plain for loop, no engine) is the baseline,
  so the engine's own cost per step is the difference.
Targets (issue 3): >= 20,000 scripted steps/s on 2 cores, <= 20 us overhead per step.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import envfoundry
from envfoundry import Environment, Message, Score, Task, ToolCall, tool
from envfoundry.core.policy import PolicyOutput
from envfoundry.policies import OraclePolicy
from envfoundry.rollout.engine import RolloutConfig, iter_jobs, run_all


def best_of(n: int, fn) -> float:
    return min(fn() for _ in range(n))


def bench_math(tasks_n: int, samples: int) -> None:
    env = envfoundry.load("math")
    tasks = list(env.tasks("test")[:tasks_n])
    cfg = RolloutConfig(samples=samples, concurrency=32)

    def engine_only() -> float:
        t = time.perf_counter()
        asyncio.run(run_all(env, iter_jobs(tasks, samples), OraclePolicy(), cfg, lambda r: None))
        return time.perf_counter() - t

    def with_store() -> float:
        d = Path(tempfile.mkdtemp())
        t = time.perf_counter()
        envfoundry.evaluate(env, model="scripted:oracle", out=d / "run", limit=tasks_n,
                            samples=samples)
        dt = time.perf_counter() - t
        shutil.rmtree(d)
        return dt

    n = tasks_n * samples  # math episodes are one step each
    e = best_of(3, engine_only)
    s = best_of(3, with_store)
    print(f"math, scripted:oracle, {n:,} rollouts (1 step each):")
    print(f"  engine only          {n / e:>10,.0f} steps/s")
    print(f"  engine + run store   {n / s:>10,.0f} steps/s   (target >= 20,000)")


@tool
def tick(ep, n: int) -> str:
    """Do nothing."""
    return "ok"


class Ticker:
    name = "ticker"
    _call = [ToolCall("tick", {"n": 1}, id="c")]

    async def act(self, ep) -> PolicyOutput:
        return PolicyOutput(Message("assistant", "", self._call))


def bench_overhead(episodes: int, steps: int) -> None:
    task = Task(env="tick", env_version="1", split="test", prompt="tick")
    env = Environment(name="tick", tasks=lambda s, seed: [task], tools=[tick],
                      graders=lambda g: Score(1.0), max_turns=steps)
    tasks = [task] * episodes
    pol = Ticker()

    def direct() -> float:
        t = time.perf_counter()
        for i in range(episodes):
            ep = env.reset(task, seed=i)
            while True:
                r = ep.step(Message("assistant", "", Ticker._call))
                if r.terminated or r.truncated:
                    break
            env.grade(ep)
        return time.perf_counter() - t

    def engine() -> float:
        t = time.perf_counter()
        asyncio.run(run_all(env, iter_jobs(tasks, 1), pol, RolloutConfig(concurrency=32),
                            lambda r: None))
        return time.perf_counter() - t

    n = episodes * steps
    d, e = best_of(3, direct), best_of(3, engine)
    print(f"long episodes: {episodes} x {steps} steps, a tool call per step:")
    print(f"  env stepped directly {d / n * 1e6:>8.2f} us/step  (baseline: no engine)")
    print(f"  through the engine   {e / n * 1e6:>8.2f} us/step  ({n / e:,.0f} steps/s)")
    print(f"  engine overhead      {(e - d) / n * 1e6:>8.2f} us/step  (target <= 20)")
    print(f"  engine+env per step  {e / n * 1e6:>8.2f} us/step  (target <= 20)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    bench_math(a.tasks, a.samples)
    bench_overhead(a.episodes, a.steps)


if __name__ == "__main__":
    main()
