"""shop-browser against the shop's tools mode: episodes per second and memory per browser context.

    python bench/bench_browser.py [--tasks 16] [--catalog-size 10000]

Prints, measured in this run (one run each, figures not assertions):
- scripted:oracle episodes per second through the engine at concurrency 1, 4 and 16, on the same
  tasks in ``shop`` (typed tools, in-process) and ``shop-browser`` (a web server and Chromium),
  and the ratio browser / tools;
- the browser's memory per open browser context (a page of the shop loaded in each): the growth of
  the proportional set size (PSS) of the browser's processes with 16 contexts open, divided by 16.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from envfoundry.envs.shop import make_env as make_tools
from envfoundry.envs.shop.browser import make_env as make_browser
from envfoundry.policies import OraclePolicy
from envfoundry.rollout.engine import RolloutConfig, iter_jobs, run_all


def episodes_per_s(env, tasks, concurrency: int) -> tuple[float, int]:
    recs: list[dict] = []
    t = time.perf_counter()
    asyncio.run(run_all(env, iter_jobs(tasks, 1), OraclePolicy(), RolloutConfig(concurrency=concurrency),
                        recs.append))
    dt = time.perf_counter() - t
    return len(recs) / dt, sum(1 for r in recs if r["passed"])


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def browser_pss_kib() -> int:
    """PSS of this process's browser (its marker on the command line) and every process below it."""
    parent: dict[int, int] = {}
    roots = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if f"--envfoundry-runtime={os.getpid()}-".encode() in f.read():
                    roots.append(int(p))
        except (OSError, ValueError, IndexError):
            continue
    tree = set(roots)
    grew = True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(_pss_kib(p) for p in tree)


def context_memory(env, tasks, n: int = 16) -> tuple[float, float]:
    async def go() -> tuple[int, int]:
        ep = await env.areset(tasks[0], seed=0)  # the browser is up, one context open
        await ep.aclose()
        await asyncio.sleep(0.5)
        base = browser_pss_kib()
        eps = await asyncio.gather(*(env.areset(tasks[i % len(tasks)], seed=i) for i in range(n)))
        await asyncio.sleep(0.5)
        full = browser_pss_kib()
        for e in eps:
            await e.aclose()
        return base, full

    base, full = asyncio.run(go())
    return base / 1024, (full - base) / 1024 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--catalog-size", type=int, default=10_000)
    a = ap.parse_args()
    tools, browser = make_tools(catalog_size=a.catalog_size), make_browser(catalog_size=a.catalog_size)
    tasks_t = list(tools.tasks("test")[: a.tasks])
    tasks_b = list(browser.tasks("test")[: a.tasks])
    assert [t.data for t in tasks_t] == [t.data for t in tasks_b]  # the same problems
    episodes_per_s(browser, tasks_b[:1], 1)  # warm: browser launch, server start, catalog
    print(f"shop vs shop-browser, scripted:oracle, {a.tasks} tasks (catalog {a.catalog_size}), "
          f"{os.cpu_count()} cores")
    print(f"{'concurrency':>11} {'tools ep/s':>11} {'browser ep/s':>13} {'browser/tools':>14} {'passed':>9}")
    for c in (1, 4, 16):
        t_rate, t_ok = episodes_per_s(tools, tasks_t, c)
        b_rate, b_ok = episodes_per_s(browser, tasks_b, c)
        print(f"{c:>11} {t_rate:>11.1f} {b_rate:>13.2f} {b_rate / t_rate:>14.4f} {b_ok:>4}/{t_ok:<4}")
    base, per = context_memory(browser, tasks_b)
    print(f"browser memory (PSS): {base:.0f} MiB with one context, +{per:.1f} MiB per open context (16 opened)")
    browser.close()


if __name__ == "__main__":
    main()
