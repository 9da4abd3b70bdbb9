"""The scripted engine with its run store, this tree against an older commit, interleaved in one run.

    python bench/bench_against.py REV [--rounds 3] [--tasks 1000] [--samples 8]

Checks REV out into a temporary git worktree and alternates rounds of the same measurement (math,
scripted:oracle, ``evaluate`` into a fresh run store) between the two trees, each in its own process
(``PYTHONPATH`` selects the tree). Prints steps a second of CPU time (less sensitive than wall time
to other jobs on a shared machine) for every round, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_ONE = """
import shutil, sys, tempfile, time
from pathlib import Path
import envfoundry
env = envfoundry.load("math")
n, k = int(sys.argv[1]), int(sys.argv[2])
d = Path(tempfile.mkdtemp())
envfoundry.evaluate(env, model="scripted:oracle", out=d / "warm", limit=50, samples=2)
t = time.process_time()
envfoundry.evaluate(env, model="scripted:oracle", out=d / "run", limit=n, samples=k)
dt = time.process_time() - t
shutil.rmtree(d)
print(n * k / dt)
"""


def _round(src: Path, tasks: int, samples: int) -> float:
    out = subprocess.run([sys.executable, "-c", _ONE, str(tasks), str(samples)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", str(old), a.rev], check=True,
                       capture_output=True)
        try:
            now, then = [], []
            for i in range(a.rounds):
                then.append(_round(old / "src", a.tasks, a.samples))
                now.append(_round(ROOT / "src", a.tasks, a.samples))
                print(f"round {i + 1}: {a.rev[:10]} {then[-1]:>9,.0f}   this tree {now[-1]:>9,.0f} steps/s of CPU")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    print(f"median: {a.rev[:10]} {statistics.median(then):,.0f}, this tree {statistics.median(now):,.0f}; "
          f"ratio this/then {statistics.median(now) / statistics.median(then):.3f}")


if __name__ == "__main__":
    main()
