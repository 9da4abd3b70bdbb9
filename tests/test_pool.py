"""The process-pool backend (``workers`` > 1): same records as one process, real model calls from
workers, a worker that dies, cancellation without orphans, and the refusals."""

from __future__ import annotations

import asyncio
import errno
import importlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import envfoundry
from envfoundry import Environment, Message, Score, Task, UsageError
from envfoundry.policies.openai import OpenAIPolicy, SamplingOptions
from envfoundry.rollout.pool import WorkerError, split_concurrency
from envfoundry.rollout.run import Run, evaluate_async
from envfoundry.testing import StubServer
from tests.conftest import TEST_ENVS, cli, start_run

ANSWERS = {t.prompt: t.data["answer"] for t in envfoundry.load("math").tasks("test")[:100]}


def math_reply(body: dict) -> str:
    """The right answer to the question asked: the stub plays a perfect model."""
    question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return f"<answer>{ANSWERS[question]}</answer>"

SLOW = f"{TEST_ENVS / 'slow.py'}:make_slow"
DIES = f"{TEST_ENVS / 'slow.py'}:make_dies"
LOCKDIE = f"{TEST_ENVS / 'slow.py'}:make_lockdie"
BLOB = f"{TEST_ENVS / 'slow.py'}:make_blob"
UNPICKLABLE = f"{TEST_ENVS / 'slow.py'}:make_unpicklable"


def _key(rec: dict) -> tuple:
    return (rec["task_id"], rec["sample"], rec["seed"], rec["outcome"], rec["score"], rec["passed"],
            json.dumps(rec["messages"], sort_keys=True), rec["turns"])


def _records(path: Path) -> list[dict]:
    return list(Run.open(path).records())


def test_split_concurrency():
    assert split_concurrency(64, 3) == [22, 21, 21]
    assert split_concurrency(5, 5) == [1] * 5
    with pytest.raises(UsageError, match="must not exceed concurrency"):
        split_concurrency(2, 3)
    with pytest.raises(UsageError, match=">= 1"):
        split_concurrency(8, 0)


def test_jobs_are_numbers_and_a_fresh_run_sends_none():
    from envfoundry.rollout.pool import remaining_jobs

    a, b = envfoundry.load("math").tasks("test")[:2]
    assert remaining_jobs([a, b], 3, 0, {}) is None  # all of them: nothing per job is built or sent
    assert remaining_jobs([a, b], 3, 5, {(a.id, 0): {}}) is None  # a done sample outside this run's offset
    left = remaining_jobs([a, b], 3, 5, {(a.id, 6): {}, (b.id, 5): {}})
    assert list(left) == [0, 2, 4, 5]  # job j: task j // 3, sample 5 + j % 3


@pytest.mark.parametrize("env,model", [("math", "scripted:oracle"), ("shop", "scripted:random")])
def test_workers_store_the_same_rollouts_as_one_process(tmp_path, env, model):
    one = envfoundry.evaluate(env, model=model, out=tmp_path / "one", limit=12, samples=3, concurrency=6)
    three = envfoundry.evaluate(env, model=model, out=tmp_path / "three", limit=12, samples=3, concurrency=6,
                                workers=3)
    a, b = _records(tmp_path / "one"), _records(tmp_path / "three")
    assert len(b) == 36 == len({(r["task_id"], r["sample"]) for r in b})
    assert sorted(map(_key, a)) == sorted(map(_key, b))  # seeds hash (task, sample): the split changes nothing
    drop = ("mean_turns",)  # identical anyway; timings are not in the summary
    assert {k: v for k, v in one.summary.items() if k not in drop} == \
        {k: v for k, v in three.summary.items() if k not in drop}
    assert three.summary["complete"] is True


def test_workers_call_a_model_server(tmp_path):
    async def go():
        async with StubServer(reply=math_reply, keep_requests=True) as srv:
            pol = OpenAIPolicy("stub-model", base_url=srv.base_url, sampling=SamplingOptions(max_tokens=16))
            run = await evaluate_async(envfoundry.load("math"), model=pol, out=tmp_path / "r", limit=20, samples=2,
                                       concurrency=8, workers=2)
            return run, len(srv.requests)

    run, n_requests = asyncio.run(go())
    s = run.summary
    assert s["n_trajectories"] == 40 and s["outcomes"]["completed"] == 40 and s["pass_rate"] == 1.0
    assert n_requests == 40 and s["completion_tokens"] > 0
    recs = _records(tmp_path / "r")
    assert all(r["usage"]["completion_tokens"] > 0 and r["policy_info"] for r in recs)


def test_a_dead_worker_is_an_error_and_resume_finishes(tmp_path):
    marker = tmp_path / "die"
    marker.touch()
    out = tmp_path / "run"
    with pytest.raises(WorkerError, match=r"exited with code 3 .*--resume runs the rest"):
        envfoundry.evaluate(DIES, env_args={"marker": str(marker)}, model="scripted:oracle", out=out, samples=2,
                            concurrency=4, workers=2)
    before = _records(out)
    assert len(before) < 80 and all(r["outcome"] == "completed" for r in before)
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert not multiprocessing.active_children()
    marker.unlink()
    run = envfoundry.evaluate(DIES, model="scripted:oracle", out=out, resume=True, workers=2)
    recs = _records(out)
    assert run.summary["complete"] and len(recs) == 80 == len({(r["task_id"], r["sample"]) for r in recs})


@pytest.mark.parametrize("offset", [0, 5])
def test_resume_with_workers_runs_exactly_the_missing_rollouts(tmp_path, offset):
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:oracle", out=out, limit=6, samples=3, concurrency=4,
                        sample_offset=offset)
    traj = out / "trajectories.jsonl"
    lines = traj.read_bytes().splitlines(keepends=True)
    traj.write_bytes(b"".join(lines[::3]))  # two of every three rollouts are lost
    run = envfoundry.evaluate("math", model="scripted:oracle", out=out, resume=True, concurrency=4, workers=2)
    recs = _records(out)
    keys = [(r["task_id"], r["sample"]) for r in recs]
    assert len(keys) == len(set(keys)) == 18 and {s for _, s in keys} == {offset, offset + 1, offset + 2}
    assert sorted(map(_key, recs)) == sorted(_key(json.loads(line)) for line in lines)  # the same rollouts
    assert run.summary["complete"] is True


class _FullDisk:
    """``os`` as the run store sees it on a disk that fills up after ``room`` bytes of records;
    after that, writing a file (the summary) fails too."""

    def __init__(self, room: int) -> None:
        self.room, self.full = room, False

    def __getattr__(self, name: str):
        return getattr(os, name)

    def write(self, fd: int, data) -> int:
        if len(data) > self.room:
            self.full = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_full_disk_names_the_file_keeps_what_was_stored_and_resumes(tmp_path, monkeypatch, capsys, workers):
    from envfoundry.cli import main

    out = tmp_path / "run"
    args = ["run", "math", "--model", "scripted:oracle", "--limit", "200", "--samples", "2", "--concurrency", "4",
            "--workers", workers, "--out", str(out)]  # with the progress bar: it must stop cleanly
    with monkeypatch.context() as m:
        m.setattr(importlib.import_module("envfoundry.rollout.store"), "os", _FullDisk(200_000))
        assert main(args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out / "trajectories.jsonl") in err and "--resume" in err
    assert "Traceback" not in err and "summary.json" not in err  # the first failure is the one reported
    assert not list(out.glob(".*.tmp"))  # no half-written summary left behind
    stored = _records(out)
    assert 0 < len(stored) < 400
    assert main(["run", "--out", str(out), "--resume", "-q", "--workers", workers]) == 0
    recs = _records(out)
    assert len(recs) == 400 == len({(r["task_id"], r["sample"]) for r in recs})


def test_a_worker_dying_with_the_job_lock_held_ends_the_run(tmp_path):
    t = time.monotonic()
    with pytest.raises(WorkerError, match="exited with code -9"):
        envfoundry.evaluate(LOCKDIE, model="scripted:oracle", out=tmp_path / "r", concurrency=4, workers=2)
    assert time.monotonic() - t < 4  # the other worker stops at once: it does not wait for the lock
    assert not multiprocessing.active_children()
    recs = _records(tmp_path / "r")
    assert all(r["outcome"] == "completed" for r in recs)


def test_classes_of_an_env_file_travel_to_workers(tmp_path):
    run = envfoundry.evaluate(BLOB, model="scripted:oracle", out=tmp_path / "r", samples=2, concurrency=4, workers=2)
    assert run.summary["n_trajectories"] == 20 and run.summary["pass_rate"] == 1.0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_write_error_is_one_clear_line_not_blamed_on_a_worker(tmp_path, workers):
    import resource

    out = tmp_path / "r"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "shop", "--model", "scripted:random", "--limit",
                        "100", "--samples", "2", "--concurrency", "4", "--workers", workers, "--out", str(out), "-q"],
                       capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    assert "File too large" in r.stderr and "trajectories.jsonl" in r.stderr and "--resume" in r.stderr
    assert "Traceback" not in r.stderr and "exited with code" not in r.stderr + r.stdout


def test_cancel_stops_workers_and_keeps_finished_rollouts(tmp_path):
    out = tmp_path / "run"

    async def go():
        async with StubServer(reply=math_reply, delay_s=0.05) as srv:
            def run(**kw):
                pol = OpenAIPolicy("stub-model", base_url=srv.base_url)
                return evaluate_async(envfoundry.load("math"), model=pol, out=out, **kw)

            job = asyncio.ensure_future(run(limit=100, samples=4, concurrency=8, workers=2))
            traj = out / "trajectories.jsonl"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not traj.exists() or traj.stat().st_size == 0):
                await asyncio.sleep(0.02)
            t = time.monotonic()
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            assert time.monotonic() - t < 10
            assert not multiprocessing.active_children()
            recs = _records(out)
            assert 0 < len(recs) < 400 and all(r["outcome"] == "completed" for r in recs)
            return await run(resume=True, workers=4)

    run = asyncio.run(go())
    recs = _records(out)
    assert run.summary["complete"] and len({(r["task_id"], r["sample"]) for r in recs}) == 400 == len(recs)


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_ctrl_c_with_workers_leaves_no_process(tmp_path):
    out = tmp_path / "run"
    p = start_run(out, "--env", SLOW, "--model", "scripted:oracle",
                  "--samples", "8", "--concurrency", "4", "--workers", "2", wait_s=60)
    family = _descendants(p.pid)
    assert len(family) >= 3  # the forkserver and two workers
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    time.sleep(0.5)
    alive = [q for q in family if Path(f"/proc/{q}").exists()
             and (Path(f"/proc/{q}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
    assert not alive, alive
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is False and s["n_trajectories"] == len(_records(out)) > 0
    r = cli("run", "--out", str(out), "--resume", "--workers", "2", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["n_trajectories"] == 800


def test_more_workers_than_cores_is_a_note_not_a_refusal(tmp_path):
    r = cli("run", "--model", "scripted:oracle",
            "math", "--limit", "4", "--workers", "2", "--out", str(tmp_path / "r"), "-q",
            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))  # one core
    assert r.returncode == 0, r.stderr
    assert "--workers 2 is more than the 1 core(s)" in r.stderr
    r = cli("run", "--model", "scripted:oracle",
            "math", "--limit", "4", "--workers", "1", "--out", str(tmp_path / "s"), "-q",
            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert r.returncode == 0 and "note:" not in r.stderr


def test_refusals(tmp_path):
    r = cli("run", "--model", "scripted:oracle", "math", "--workers", "0", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "workers must be >= 1" in r.stdout + r.stderr
    r = cli("run", "--model", "scripted:oracle",
            "math", "--workers", "5", "--concurrency", "2", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "must not exceed concurrency" in r.stdout + r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    own = Environment(name="own", tasks=lambda split, seed: [Task(env="own", env_version="1", split=split,
                                                                   prompt="say 1", data={})],
                      graders=lambda g: Score(1.0), reference=lambda ep: Message("assistant", "1"))
    with pytest.raises(UsageError, match="built in this process only"):
        envfoundry.evaluate(own, model="scripted:oracle", out=tmp_path / "c", concurrency=2, workers=2)
    with pytest.raises(UsageError, match="tasks cannot be sent to worker processes"):
        envfoundry.evaluate(UNPICKLABLE, model="scripted:oracle", out=tmp_path / "e", concurrency=2, workers=2)

    class Unpicklable:
        name = "unpicklable"

        def __init__(self):
            self.lock = __import__("threading").Lock()

        def describe(self):
            return {"spec": "test:unpicklable"}

        async def start(self): ...
        async def close(self): ...
        async def act(self, ep): ...

    with pytest.raises(UsageError, match="cannot be sent to worker processes"):
        envfoundry.evaluate("math", model=Unpicklable(), out=tmp_path / "d", limit=2, concurrency=2, workers=2)
    assert not any((tmp_path / d).exists() for d in "cde")  # refused before a run directory was made


@pytest.mark.parametrize("limit,samples", [(4, 1), (200, 200)])  # the second: jobs bigger than a pipe's buffer
def test_worker_env_mismatch_is_refused(tmp_path, limit, samples):
    env = envfoundry.load("math")
    env.version = "9.9.9"  # changed after loading: a worker would load another environment
    t = time.monotonic()
    with pytest.raises(WorkerError, match="loads as math"):
        envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "r", limit=limit, samples=samples,
                            concurrency=4, workers=2)
    assert time.monotonic() - t < 4 and not multiprocessing.active_children()
