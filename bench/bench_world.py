"""World benchmarks: fork cost against world size, and full shop episodes (figures, not assertions).

    python bench/bench_world.py [--tasks 300] [--big]

Prints, measured in this run:
- ``World.fork()`` of a world with 10k and 100k catalog rows and a task-sized overlay (40 records),
  against ``copy.deepcopy`` of the same tables (the baseline a naive environment would pay per
  rollout); the fork must not grow with the catalog (target <= 1 ms);
- the same for a real shop task world (10,000 products, ~80,000 variants; ``--big`` adds a
  100,000-product catalog), plus the world diff a grader takes;
- full episodes of ``shop`` and ``shop-web`` with ``scripted:oracle`` through the engine (records
  discarded): steps/s and rollouts/s, task generation and catalog build excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import time

from envfoundry import World
from envfoundry.envs.shop import make_env
from envfoundry.envs.shop.account import task_world
from envfoundry.envs.shop.catalog import get_catalog
from envfoundry.policies import OraclePolicy
from envfoundry.rollout.engine import RolloutConfig, iter_jobs, run_all


def per_call(fn, n: int) -> float:
    """Median seconds per call over ``n`` calls (in 5 batches)."""
    batch = max(1, n // 5)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - t) / batch)
    return statistics.median(times)


def synthetic(rows: int) -> World:
    w = World({"products": {f"P{i:06d}": {"title": f"item {i}", "price_cents": 100 + i % 997, "stock": i % 13,
                                          "tags": ["a", "b"]} for i in range(rows)}})
    w = w.fork()
    for i in range(40):  # a task's overlay: account, coupons, overrides
        w.insert("account", f"r{i}", {"n": i})
    return w


def bench_fork() -> None:
    print("fork of a world with a 40-record overlay (median per fork):")
    for rows in (10_000, 100_000):
        w = synthetic(rows)
        f = per_call(w.fork, 20_000)
        tables = w.to_json()
        d = per_call(lambda t=tables: copy.deepcopy(t), 5 if rows > 10_000 else 20)
        print(f"  {rows:>7,} rows   fork {f * 1e6:8.1f} us   deepcopy {d * 1e3:9.1f} ms   "
              f"ratio {d / f:>10,.0f}x")


def bench_shop_world(big: bool) -> None:
    shop = make_env()
    sizes = [10_000, 100_000] if big else [10_000]
    print("shop task worlds (fork = what every rollout pays; diff = what the grader reads):")
    for size in sizes:
        t = time.perf_counter()
        cat = get_catalog(0, size)
        built = time.perf_counter() - t
        rows = cat.world.count("products") + cat.world.count("variants")
        task = shop.tasks("test")[0] if size == 10_000 else \
            make_env(catalog_size=size).tasks("test")[0]
        w = task_world(task)
        f = per_call(w.fork, 20_000)
        make = per_call(lambda tk=task: task_world(tk), 500)
        after = w.fork()
        after.insert("orders", "O-9999", {"total_cents": 1})
        diff = per_call(lambda w=w, after=after: w.diff(after), 5_000)
        print(f"  {size:>7,} products ({rows:,} rows, built once in {built:.1f} s): fork {f * 1e6:.1f} us, "
              f"task world {make * 1e6:.0f} us, diff {diff * 1e6:.1f} us")


def bench_episodes(n: int) -> None:
    print(f"full oracle episodes through the engine ({n} test tasks, default fault rates):")
    for mode in ("tools", "web"):
        env = make_env(mode)
        tasks = list(env.tasks("test")[:n])
        steps = [0]

        def on_record(rec, steps=steps) -> None:
            steps[0] += rec["turns"]
            assert rec["score"] == 1.0, rec["explanation"]

        asyncio.run(run_all(env, iter_jobs(tasks[:5], 1), OraclePolicy(), RolloutConfig(), lambda r: None))
        t = time.perf_counter()
        asyncio.run(run_all(env, iter_jobs(tasks, 1), OraclePolicy(), RolloutConfig(concurrency=32), on_record))
        dt = time.perf_counter() - t
        name = "shop" if mode == "tools" else "shop-web"
        print(f"  {name:<9} {steps[0] / dt:>8,.0f} steps/s   {n / dt:>6,.0f} rollouts/s   "
              f"({steps[0] / n:.1f} steps per episode)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--big", action="store_true", help="also build a 100,000-product shop catalog")
    a = ap.parse_args()
    bench_fork()
    bench_shop_world(a.big)
    bench_episodes(a.tasks)


if __name__ == "__main__":
    main()
