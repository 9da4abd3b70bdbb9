"""Summary benchmark: the cost of a run's summary (pass@k, pass^k) at a large group size.

    python bench/bench_summary.py [--samples 20000] [--tasks 1] [--groups 200]

Prints, measured in this run (figures, not assertions):
1. ``run math --model scripted:noop --limit TASKS --samples SAMPLES`` through the library: the
   whole run, then the summary of its stored records at ``samples=SAMPLES`` against two
   baselines: counting the same records (``Summary.add`` on each, the part a run does anyway)
   and the summary of the same counts at ``samples=1``. Issue 18's target: the summary well
   under a second (it took 139 s with exact fractions over every k from 1 to 20,000).
2. A harder case for the summary alone: ``--groups`` tasks of ``SAMPLES`` samples each, all with a
   different pass count (so nothing is shared between tasks; the noop run above has 0 passes,
   the cheapest case). Baseline: the time counting those GROUPS x SAMPLES records would take, at
   the rate measured in part 1 (a run must count them anyway).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import envfoundry
from envfoundry.core.stats import summary_ks
from envfoundry.rollout.store import RunStore
from envfoundry.rollout.summary import Summary, light_record


def best_of(n: int, fn) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_run(tasks: int, samples: int) -> float:
    """Part 1; returns the time to count one record."""
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        run = envfoundry.evaluate("math", model="scripted:noop", out=Path(d) / "run", limit=tasks, samples=samples)
        whole = time.perf_counter() - t
        recs = [light_record(r) for r in RunStore.open(run.path).records()]
        stored = json.loads((run.path / "summary.json").read_text())

    def count() -> Summary:
        acc = Summary()
        for r in recs:
            acc.add(r)
        return acc

    acc = count()
    t_count = best_of(3, count)
    t_one = best_of(3, lambda: acc.result(samples=1))
    t_full = best_of(3, lambda: acc.result(samples=samples))
    assert acc.result(samples=samples)["pass_at_k"] == stored["pass_at_k"]  # the summary the run wrote
    print(f"1. run math, scripted:noop, {tasks} task(s) x {samples:,} samples ({len(recs):,} records)")
    print(f"   whole run (rollouts, store, summary)  {whole:8.3f} s")
    print(f"   count the records (baseline)          {t_count * 1e3:8.2f} ms")
    print(f"   summary at samples=1 (baseline)       {t_one * 1e3:8.2f} ms")
    print(f"   summary at samples={samples:<18,}{t_full * 1e3:8.2f} ms   "
          f"({len(summary_ks(samples))} values of k; target: well under 1 s)")
    print(f"   ratio to counting the records         {t_full / t_count:8.2f}")
    print(f"   ratio to the summary at samples=1     {t_full / t_one:8.1f}")
    return t_count / len(recs)


def bench_groups(groups: int, samples: int, per_record_s: float) -> None:
    pairs = [(samples, (i * samples) // max(groups, 1)) for i in range(groups)]  # all different pass counts
    acc = Summary()

    def fill() -> None:
        acc.per_task.clear()
        for i, (n, c) in enumerate(pairs):
            acc.per_task[f"t{i}"] = [n, c]
        acc.n, acc.passes = sum(n for n, _ in pairs), sum(c for _, c in pairs)

    fill()
    t_full = best_of(3, lambda: acc.result(samples=samples))
    distinct = len(Counter(pairs))
    t_count = per_record_s * groups * samples
    print(f"2. summary alone: {groups} tasks x {samples:,} samples, {distinct} distinct (n, c)")
    print(f"   counting {groups * samples:,} records (estimated)   {t_count:8.2f} s")
    print(f"   summary at samples={samples:<18,}{t_full * 1e3:8.2f} ms")
    print(f"   ratio to counting the records         {t_full / t_count:8.4f}")
    print(f"   per distinct (n, c)                   {t_full / distinct * 1e6:8.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--groups", type=int, default=200)
    a = ap.parse_args()
    per_record = bench_run(a.tasks, a.samples)
    bench_groups(a.groups, a.samples, per_record)


if __name__ == "__main__":
    main()
