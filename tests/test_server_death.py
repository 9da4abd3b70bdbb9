"""A model server that dies, at start-up or mid-run: the run stops with exit 1, the server's exit
status or signal and the last lines of its log, the log kept, and no rollout recorded against it.

The server is ``tests/fake_llama_server.py`` run through envfoundry's real bootstrap in place of
``llama_cpp.server`` (``ENVFOUNDRY_LLAMA_SERVER_MODULE``): it crashes with SIGSEGV where
llama-cpp-python 0.3.36 does on CPUs with AMX, so the crash path is tested on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python[server] (envfoundry[local])")


def _run(tmp_path: Path, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF fake")
    env = {**os.environ, "ENVFOUNDRY_LLAMA_SERVER_MODULE": "tests.fake_llama_server", "FAKE_LLAMA_MODE": mode,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "200",
           "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "envfoundry", "run", "math", "--model", f"local:{model}", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines() if x.strip()]


def test_a_server_that_crashes_in_its_first_decode_stops_the_run_before_any_rollout(tmp_path):
    out = tmp_path / "run"
    r = _run(tmp_path, "crash_first_decode", "--limit", "8", "--samples", "2", "--out", str(out), "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "killed by signal 11 (SIGSEGV: segmentation fault) during its first completion" in r.stderr
    assert "decoding ... crash (SIGSEGV)" in r.stderr  # the last lines of its log
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF" in r.stderr  # what to do about it
    assert not out.exists()  # no rollout was recorded against the dead server
    logs = list(tmp_path.glob("envfoundry-llama-*.log"))  # the log is kept where the message says
    assert len(logs) == 1 and str(logs[0]) in r.stderr.replace("\n", "")
    assert "crash (SIGSEGV)" in logs[0].read_text()


def test_a_server_that_exits_while_loading_names_its_exit_code(tmp_path):
    r = _run(tmp_path, "exit_on_load", "--limit", "2", "--out", str(tmp_path / "run"), "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exited with code 3 during startup" in r.stderr
    assert "cannot load the model" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_server_that_dies_mid_run_stops_the_run_and_resume_finishes_it(tmp_path):
    out = tmp_path / "run"
    r = _run(tmp_path, "crash_after:4", "--limit", "8", "--concurrency", "1", "--out", str(out), "-q")
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.replace("\n", " ")
    assert "was killed by signal 11 (SIGSEGV" in err
    assert f"envfoundry run --out {out} --resume" in err
    kept = out / "server-logs" / "slot-0.log"
    assert kept.is_file() and "crash (SIGSEGV)" in kept.read_text()
    recs = _records(out)
    # the 4 answered rollouts (one was checking the server at start-up) are stored; none is an error
    assert 1 <= len(recs) <= 4 and all(x["outcome"] == "completed" for x in recs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_errors"] == 0 and summary["complete"] is False

    r = _run(tmp_path, "ok", "--out", str(out), "--resume", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    recs = _records(out)
    assert len(recs) == 8 and len({x["task_id"] for x in recs}) == 8
    assert all(x["outcome"] == "completed" for x in recs)


def test_a_slot_that_dies_among_several_is_dropped_and_the_run_goes_on(tmp_path):
    """With two slots, one dying is a warning (its requests go to the other), not a failed run."""
    out = tmp_path / "run"
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF fake")
    env = {**os.environ, "ENVFOUNDRY_LLAMA_SERVER_MODULE": "tests.fake_llama_server",
           "FAKE_LLAMA_MODE": "crash_after:3", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    # both slots crash after 3 answers, so 2 x 3 - 2 start-up checks = 4 rollouts at most, then the run stops
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "math", "--model", f"local:{model}", "--slots", "2",
                        "--limit", "10", "--concurrency", "2", "--out", str(out), "-q"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "slot" in r.stderr and "is down" in r.stderr  # the first death is a warning
    assert r.stderr.count("was killed by signal 11") == 2  # the second stops the run: both are described
    assert sorted(p.name for p in (out / "server-logs").iterdir()) == ["slot-0.log", "slot-1.log"]
    assert all(x["outcome"] == "completed" for x in _records(out))


def test_a_slot_that_dies_while_others_go_on_is_named_with_its_signal_and_its_log_is_kept(tmp_path):
    """One slot of two crashes mid-run: the run finishes on the other, and the warning says how the
    dead server ended and where its log is (kept, not deleted with the temporary files)."""
    out = tmp_path / "run"
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF fake")
    env = {**os.environ, "ENVFOUNDRY_LLAMA_SERVER_MODULE": "tests.fake_llama_server",
           "FAKE_LLAMA_MODE": "first_crashes_after:2", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path),
           "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "math", "--model", f"local:{model}", "--slots", "2",
                        "--limit", "8", "--concurrency", "2", "--out", str(out), "-q"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    err = r.stderr.replace("\n", " ")
    assert "model server slot 0" in err and "was killed by signal 11 (SIGSEGV" in err
    assert "the other slots went on" in err
    logs = list(tmp_path.glob("envfoundry-llama-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err  # the dead slot's log stays; the live one's is removed
    assert "crash (SIGSEGV)" in logs[0].read_text()
    recs = _records(out)
    assert len(recs) == 8 and all(x["outcome"] == "completed" for x in recs)


def test_a_crash_with_repacking_turned_back_on_names_the_variable_to_unset(tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF fake")
    env = {**os.environ, "ENVFOUNDRY_LLAMA_SERVER_MODULE": "tests.fake_llama_server", "FAKE_LLAMA_MODE":
           "crash_first_decode", "ENVFOUNDRY_LLAMA_REPACK": "1", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path),
           "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "math", "--model", f"local:{model}", "--limit", "2",
                        "--out", str(tmp_path / "run"), "-q"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ENVFOUNDRY_LLAMA_REPACK=1 keeps llama.cpp's weight repacking" in r.stderr.replace("\n", " ")
