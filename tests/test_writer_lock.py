"""One writer per output folder: a run being written by another process is never resumed, appended
to or deleted by a second one; a killed writer leaves no lock behind."""

import signal
import subprocess
import sys

import pytest

import envfoundry
from envfoundry.cli import main
from envfoundry.core.errors import StoreError
from envfoundry.core.files import is_locked_elsewhere, lock_folder, unlock_folder

_HOLD = "import sys, time; from envfoundry.core.files import lock_folder; lock_folder(sys.argv[1]); " \
        "print('held', flush=True); time.sleep(60)"


def _holder(path):
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:oracle", out=out, limit=3, samples=2)
    return out


def test_a_run_held_by_another_process_is_not_resumed_nor_replaced(run_dir, capsys):
    holder = _holder(run_dir)
    try:
        assert is_locked_elsewhere(run_dir)
        before = (run_dir / "trajectories.jsonl").read_bytes()
        with pytest.raises(StoreError, match="being written by another envfoundry process"):
            envfoundry.evaluate("math", model="scripted:oracle", out=run_dir, resume=True)
        assert main(["run", "math", "--model", "scripted:oracle", "--out", str(run_dir), "--force"]) == 2
        assert "another envfoundry process is writing" in capsys.readouterr().err
        assert (run_dir / "trajectories.jsonl").read_bytes() == before  # nothing appended, nothing deleted
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the dead holder's lock: the run resumes and --force works again
    assert not is_locked_elsewhere(run_dir)
    assert envfoundry.evaluate("math", model="scripted:oracle", out=run_dir, resume=True).ok


_TRY = "import sys; from envfoundry.core.files import lock_folder; from envfoundry.core.errors import StoreError\n" \
       "try:\n    lock_folder(sys.argv[1]); print('took it')\nexcept StoreError:\n    print('refused')"


def _try(path):
    return subprocess.run([sys.executable, "-c", _TRY, str(path)], capture_output=True, text=True).stdout.strip()


def test_the_lock_is_reentrant_in_one_process_and_released_by_the_last_holder(tmp_path):
    lock_folder(tmp_path)
    lock_folder(tmp_path)
    unlock_folder(tmp_path)
    assert _try(tmp_path) == "refused"  # one hold is left
    unlock_folder(tmp_path)
    assert _try(tmp_path) == "took it"
