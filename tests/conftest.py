import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: CI's 2 cores are shared (a fork or a GC pause makes one example slow); a
# property fails on what it computes, never on how long one example took.
settings.register_profile("envfoundry", deadline=None)
settings.load_profile("envfoundry")

ROOT = Path(__file__).resolve().parent.parent
TEST_ENVS = Path(__file__).resolve().parent / "envs"


def cli(*args: str, **kw):
    """Run the envfoundry CLI in a subprocess (the real entry point and exit codes)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "envfoundry", *args], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "200"}, **kw,
    )


def start_run(out: Path, *args: str, wait_s: float = 30, min_bytes: int = 1000):
    """Start ``envfoundry run ARGS --out OUT -q`` in a subprocess that takes Ctrl-C as a user's
    does (a shell may start children with SIGINT ignored), and return once OUT holds about
    ``min_bytes`` of records (or ``wait_s`` has passed)."""
    import signal
    import subprocess
    import time

    p = subprocess.Popen([sys.executable, "-m", "envfoundry", "run", *args, "--out", str(out), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    traj = out / "trajectories.jsonl"
    deadline = time.time() + wait_s
    while time.time() < deadline and (not traj.exists() or traj.stat().st_size < min_bytes):
        time.sleep(0.01)
    return p


@pytest.fixture
def run_cli():
    return cli
