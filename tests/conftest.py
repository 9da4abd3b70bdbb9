import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_ENVS = Path(__file__).resolve().parent / "envs"


def cli(*args: str, **kw):
    """Run the envfoundry CLI in a subprocess (the real entry point and exit codes)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "envfoundry", *args], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "200"}, **kw,
    )


@pytest.fixture
def run_cli():
    return cli
