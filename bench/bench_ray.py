"""Ray backend benchmark: rollouts per second of ``--backend ray`` against a local run, measured in one run.

    python bench/bench_ray.py                       # 20,000 rollouts, a local Ray cluster of this machine's cores
    python bench/bench_ray.py --cpus 2 --rollouts 4000
    python bench/bench_ray.py --address HOST:PORT   # an existing cluster (its token in RAY_AUTH_TOKEN if it has one)

A scripted run (math, scripted:oracle: the rollouts cost CPU only, no model) of ``--rollouts``
rollouts (``--samples`` per task), each with the full run store on disk, three ways:

- **local**: one process (``evaluate(...)``), the baseline;
- **pool**: ``--workers`` processes on this machine (``workers=N``), for comparison;
- **ray**: ``evaluate(..., backend="ray")`` on the cluster, one actor per CPU. Its fixed cost (the
  actors starting: a Python process each, loading the environment) is measured separately by a
  run of one rollout, and is included in the ray row, as a user pays it.

Printed: each one's rollouts/s over the whole call (best of ``--repeat``), its ratio to local,
and the same records check as the tests (identical task, sample, seed, outcome, score).
Scripted rollouts take ~0.1 ms each, so here Ray's costs show (actor start, records sent to
the driver, the one driver writing the store); with a model, a rollout takes seconds and the
cluster's CPUs and model servers are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import envfoundry
from envfoundry.rollout.run import Run


def _keys(path: Path) -> list[tuple]:
    return sorted((r["task_id"], r["sample"], r["seed"], r["outcome"], r["score"]) for r in Run.open(path).records())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rollouts", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=10, help="rollouts per task")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray cluster")
    ap.add_argument("--workers", type=int, default=0, help="pool processes (default: --cpus)")
    ap.add_argument("--address", default=None, help="an existing Ray cluster instead of a local one")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:
        t = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, object_store_memory=200_000_000,
                 logging_level="WARNING")
        print(f"local Ray cluster of {args.cpus} CPUs started in {time.perf_counter() - t:.1f} s")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = args.workers or min(cpus, os.cpu_count() or 1)
    limit = max(1, args.rollouts // args.samples)
    n = limit * args.samples
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray"))
    common = dict(model="scripted:oracle", limit=limit, samples=args.samples, concurrency=32)
    ways = {"local": {}, f"pool ({workers} processes)": {"workers": workers},
            f"ray ({cpus} actors)": {"backend": "ray"}}
    try:
        t = time.perf_counter()
        envfoundry.evaluate("math", out=tmp / "one", backend="ray", model="scripted:oracle", limit=1)
        fixed = time.perf_counter() - t
        rates: dict[str, float] = {}
        for name, kw in ways.items():
            best = float("inf")
            for i in range(args.repeat):
                out = tmp / f"{name.split()[0]}{i}"
                t = time.perf_counter()
                envfoundry.evaluate("math", out=out, **common, **kw)
                best = min(best, time.perf_counter() - t)
            rates[name] = n / best
        same = _keys(tmp / "local0") == _keys(tmp / "ray0")
        base = rates["local"]
        print(f"\nmath, scripted:oracle, {n:,} rollouts ({limit:,} tasks x {args.samples}), run store on disk; "
              f"this machine: {os.cpu_count()} cores")
        print(f"{'':28} {'rollouts/s':>12} {'vs local':>9}")
        for name, r in rates.items():
            print(f"{name:28} {r:12,.0f} {r / base:8.2f}x")
        print(f"\nray fixed cost (a run of 1 rollout: actors start, load math, hand back): {fixed:.2f} s")
        print(f"ray records identical to local (task, sample, seed, outcome, score): {same}")
        print(json.dumps({"rollouts": n, "cpus": cpus, "rates": {k: round(v) for k, v in rates.items()},
                          "ray_vs_local": round(rates[f'ray ({cpus} actors)'] / base, 3),
                          "ray_fixed_s": round(fixed, 2), "same_records": same}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
