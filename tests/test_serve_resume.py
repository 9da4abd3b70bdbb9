"""A served environment's server killed in the middle of a run: the rollouts it hit are env_error (never a
score), and after a restart on the same address `--resume` runs them again, with nothing lost or duplicated."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.conftest import ROOT, TEST_ENVS
from tests.test_serve import start_server, stop

SLOW = f"{TEST_ENVS / 'slow.py'}:make_slow"  # 100 tasks, a grader that takes 4 ms


def _records(out):
    return [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]


def test_killed_server_gives_env_errors_then_resume_after_restart_completes(tmp_path):
    server, url = start_server(SLOW, "--env-threads", "1")
    port = int(url.rsplit(":", 1)[1])
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "envfoundry", "run", url, "--model", "scripted:oracle",
                            "--samples", "6", "--concurrency", "2", "--out", str(out), "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        traj = out / "trajectories.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not traj.exists() or len(traj.read_bytes().splitlines()) < 30):
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # no goodbye: connections drop mid-rollout
        server.wait()
        _, err = run.communicate(timeout=120)
    finally:
        stop(server)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, err  # more errors than --max-errors (0) tolerates
    assert "--resume" in err
    recs = _records(out)
    assert len(recs) == 600  # every rollout has a record: the ones after the kill are errors
    outcomes = Counter(x["outcome"] for x in recs)
    assert outcomes["completed"] >= 30 and outcomes["env_error"] > 0 and set(outcomes) == {"completed", "env_error"}
    errs = [x for x in recs if x["outcome"] == "env_error"]
    assert all(x["score"] is None and x["passed"] is None for x in errs)
    assert all(f"the environment server at {url}" in x["error"] for x in errs), errs[0]["error"]

    # the server comes back on the same address; --resume runs exactly the errored rollouts again
    server, url2 = start_server(SLOW, "--env-threads", "1", port=port)
    try:
        assert url2 == url
        r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "--out", str(out), "--resume", "-q"],
                           capture_output=True, text=True, cwd=ROOT)
    finally:
        stop(server)
    assert r.returncode == 0, r.stderr
    recs = _records(out)
    per = Counter((x["task_id"], x["sample"]) for x in recs)
    assert len(per) == 600 and set(per.values()) == {1}  # nothing lost, nothing duplicated
    assert all(x["outcome"] == "completed" and x["score"] == 1.0 for x in recs)
    moved = (out / "errors.jsonl").read_text().splitlines()
    assert len(moved) == outcomes["env_error"]  # the errored records are kept aside, not counted
