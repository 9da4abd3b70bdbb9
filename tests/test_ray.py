"""The Ray backend (``--backend ray``) on a real local Ray cluster of two worker CPUs: the same records
as a local run, actors that die, a driver killed or interrupted and resumed, and the refusals."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import envfoundry
from envfoundry import UsageError
from envfoundry.cli import main
from envfoundry.core.seeding import derive_seed
from envfoundry.rollout.pool import WorkerError
from envfoundry.rollout.run import Run, evaluate_async
from tests.conftest import TEST_ENVS

if importlib.util.find_spec("ray") is None:  # not imported here: the cluster fixture sets Ray's environment first
    pytest.skip("needs Ray (pip install envfoundry[ray])", allow_module_level=True)

SLOW = f"{TEST_ENVS / 'slow.py'}:make_slow"

#: a head node with two CPUs, in its own temp dir; it prints its address and lives until stdin closes
HOLDER = """
import sys, ray
ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100_000_000,
               _temp_dir=sys.argv[1], configure_logging=False, log_to_driver=False)
print(ctx.address_info["gcs_address"], flush=True)
sys.stdin.read()
ray.shutdown()
"""

#: environments whose process dies while grading task 7 (once: the first time only)
DYING = """
import os
from pathlib import Path
from envfoundry import Environment, Message, Score, Task


def _make(name, marker, once):
    def tasks(split, seed):
        return [Task(env=name, env_version="1", split=split, prompt=f"say {i}", data={"i": i}) for i in range(30)]

    def grade(g):
        if g.task.data["i"] == 7 and Path(marker).exists():
            if once:
                Path(marker).unlink()
            os._exit(3)
        return Score(float(g.final == str(g.task.data["i"])))

    return Environment(name=name, tasks=tasks, graders=grade, max_turns=1,
                       reference=lambda ep: Message("assistant", str(ep.task.data["i"])))


def make_dies_once(marker: str):
    return _make("dies_once", marker, True)


def make_dies_always(marker: str):
    return _make("dies_always", marker, False)
"""


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray cluster (token authentication, loopback only) for this module;
    this process and its subprocesses reach it through the environment set here."""
    from envfoundry.rollout import ray_backend

    tmp = tempfile.mkdtemp(prefix="efray")  # short: Ray's socket paths must fit in 107 bytes
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # the latter: bind 127.0.0.1
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    mp.delenv("RAY_ADDRESS", raising=False)
    if "ray._private.ray_constants" in sys.modules:  # read at import: Ray was imported before this module ran
        mp.setattr(sys.modules["ray._private.ray_constants"], "ENABLE_RAY_CLUSTER", False)
    log = open(Path(tmp) / "holder.log", "w")  # noqa: SIM115 - closed at the end
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(Path(tmp) / "r")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        address = p.stdout.readline().strip()
        assert address, Path(tmp, "holder.log").read_text()[-2000:]
        yield address
    finally:
        ray_backend.disconnect()
        p.stdin.close()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        mp.undo()
        shutil.rmtree(tmp, ignore_errors=True)


def _key(rec: dict) -> tuple:
    return (rec["task_id"], rec["sample"], rec["seed"], rec["outcome"], rec["score"], rec["passed"],
            json.dumps(rec["messages"], sort_keys=True), rec["turns"])


def _records(path: Path) -> list[dict]:
    return list(Run.open(path).records())


def _free_cpus(want: float, within_s: float = 15) -> float:
    """The cluster's free CPUs, once they are ``want`` (or ``within_s`` has passed)."""
    import ray

    deadline = time.monotonic() + within_s
    while (free := ray.available_resources().get("CPU", 0)) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    return free


@pytest.mark.parametrize("env,model,workers", [("math", "scripted:oracle", 1), ("shop", "scripted:random", 3)])
def test_ray_stores_the_same_rollouts_as_a_local_run(tmp_path, cluster, env, model, workers):
    kw = dict(model=model, limit=40, samples=3, concurrency=6, seed=11)
    one = envfoundry.evaluate(env, out=tmp_path / "local", **kw)
    # workers=3: a third actor finds no free CPU on this cluster, and the other two run everything
    ray = envfoundry.evaluate(env, out=tmp_path / "ray", backend="ray", ray_address=cluster, workers=workers, **kw)
    a, b = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert len(b) == 120 == len({(r["task_id"], r["sample"]) for r in b})
    assert sorted(map(_key, a)) == sorted(map(_key, b))
    assert all(r["seed"] == derive_seed(11, r["task_id"], r["sample"]) for r in b)
    assert {k: v for k, v in one.summary.items() if k != "mean_turns"} == \
        {k: v for k, v in ray.summary.items() if k != "mean_turns"}
    assert ray.summary["complete"] is True
    assert _free_cpus(2) == 2  # every actor was released


def test_an_actor_that_dies_has_its_rollouts_run_again(tmp_path, cluster):
    (tmp_path / "dying.py").write_text(DYING)
    marker = tmp_path / "die"
    marker.touch()
    spec = f"{tmp_path / 'dying.py'}:make_dies_once"
    run = envfoundry.evaluate(spec, env_args={"marker": str(marker)}, model="scripted:oracle", out=tmp_path / "r",
                              samples=2, concurrency=4, backend="ray", ray_address=cluster)
    assert not marker.exists()  # an actor did die
    recs = _records(tmp_path / "r")
    assert len(recs) == 60 == len({(r["task_id"], r["sample"]) for r in recs})
    assert all(r["outcome"] == "completed" and r["passed"] for r in recs)
    assert run.summary["complete"] and run.summary["n_errors"] == 0


def test_rollouts_that_kill_every_actor_end_the_run_unscored_and_resume(tmp_path, cluster):
    (tmp_path / "dying.py").write_text(DYING)
    marker = tmp_path / "die"
    marker.touch()
    spec, out = f"{tmp_path / 'dying.py'}:make_dies_always", tmp_path / "r"
    with pytest.raises(WorkerError, match=r"lost with 2 Ray actors in turn .*--resume runs the rest"):
        envfoundry.evaluate(spec, env_args={"marker": str(marker)}, model="scripted:oracle", out=out, samples=2,
                            concurrency=4, backend="ray", ray_address=cluster)
    before = _records(out)
    assert len(before) < 60 and all(r["outcome"] == "completed" for r in before)  # nothing scored for the lost
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    marker.unlink()
    run = envfoundry.evaluate(spec, model="scripted:oracle", out=out, resume=True, backend="ray",
                              ray_address=cluster)
    recs = _records(out)
    assert run.summary["complete"] and len(recs) == 60 == len({(r["task_id"], r["sample"]) for r in recs})


def test_cancel_keeps_what_finished_and_releases_the_actors(tmp_path, cluster):
    out = tmp_path / "r"

    async def go() -> None:
        job = asyncio.ensure_future(evaluate_async(SLOW, model="scripted:oracle", out=out, samples=30,
                                                   concurrency=4, backend="ray", ray_address=cluster))
        traj = out / "trajectories.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not traj.exists() or traj.stat().st_size == 0):
            await asyncio.sleep(0.02)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(go())
    recs = _records(out)
    assert 0 < len(recs) < 3000 and all(r["outcome"] == "completed" for r in recs)
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is False and s["n_trajectories"] == len(recs)
    assert _free_cpus(2) == 2


def _start(out: Path, *args: str, grown_past: int = 0) -> subprocess.Popen:
    """``envfoundry run ARGS --out OUT -q`` in a subprocess that takes Ctrl-C as a user's does,
    returned once OUT's records have grown past ``grown_past`` bytes (or 60 s have passed)."""
    p = subprocess.Popen([sys.executable, "-m", "envfoundry", "run", *args, "--out", str(out), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    traj = out / "trajectories.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None and (not traj.exists() or traj.stat().st_size <= grown_past):
        time.sleep(0.02)
    return p


def test_a_killed_driver_resumes_with_nothing_lost_or_repeated(tmp_path, cluster, monkeypatch):
    out = tmp_path / "run"
    p = _start(out, SLOW, "--model", "scripted:oracle", "--samples", "10", "--concurrency", "8",
               "--backend", "ray", "--ray-address", cluster)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    killed = _records(out)
    assert 0 < len(killed) < 1000
    # the next driver finds the cluster through RAY_ADDRESS (--ray-address auto); Ctrl-C stops it
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    size = (out / "trajectories.jsonl").stat().st_size
    p = _start(out, "--resume", "--backend", "ray", grown_past=size)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    interrupted = _records(out)
    assert len(killed) < len(interrupted) < 1000
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is False and s["n_trajectories"] == len(interrupted)
    assert main(["run", "--out", str(out), "--resume", "-q", "--backend", "ray"]) == 0
    recs = _records(out)
    keys = [(r["task_id"], r["sample"]) for r in recs]
    assert len(keys) == len(set(keys)) == 1000
    assert {_key(r) for r in interrupted} <= {_key(r) for r in recs}  # what was stored stays as it was
    assert all(r["seed"] == derive_seed(0, r["task_id"], r["sample"]) and r["passed"] for r in recs)


@contextlib.contextmanager
def _not_ray():
    """A port on 127.0.0.1 where a server answers in HTTP/1 (not gRPC, as Ray does)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = srv.accept()
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


def test_bad_addresses_and_refusals(tmp_path, cluster, capsys, monkeypatch):
    base = ["run", "math", "--model", "scripted:oracle", "--limit", "3", "-q"]
    for i, (extra, code, says) in enumerate([
        (["--backend", "ray", "--ray-address", "ray://no-port"], 2, "--ray-address (ray_address): expected"),
        (["--backend", "ray", "--ray-address", "http://127.0.0.1:8265"], 2, "ray://HOST:PORT"),
        (["--backend", "ray", "--ray-address", "127.0.0.1:70000"], 2, "got '127.0.0.1:70000'"),
        (["--ray-address", "auto"], 2, "is for --backend ray"),
        (["--backend", "spark"], 2, "--backend (backend): Input should be 'local' or 'ray'"),
        (["--backend", "ray", "--ray-address", "127.0.0.1:1"], 1, "cannot reach the Ray cluster at 127.0.0.1:1"),
    ]):
        out = tmp_path / f"r{i}"
        assert main([*base, *extra, "--out", str(out)]) == code, extra
        err = capsys.readouterr().err
        assert says in " ".join(err.split()) and "Traceback" not in err, err
        assert not out.exists()  # refused before a run directory was made
    with _not_ray() as port:  # something else listens there (a web server): refused at once, not retried
        assert main([*base, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "w")]) \
            == 1
        assert "does not answer as a Ray cluster" in " ".join(capsys.readouterr().err.split())
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # auto, the default, follows RAY_ADDRESS
    assert main([*base, "--backend", "ray", "--out", str(tmp_path / "a")]) == 1
    assert "127.0.0.1:1 (from --ray-address auto)" in " ".join(capsys.readouterr().err.split())

    own = envfoundry.Environment(name="own", tasks=lambda split, seed: [envfoundry.Task(
        env="own", env_version="1", split=split, prompt="say 1", data={})], graders=lambda g: envfoundry.Score(1.0),
        reference=lambda ep: envfoundry.Message("assistant", "1"))
    with pytest.raises(UsageError, match="--backend ray needs an environment given by name"):
        envfoundry.evaluate(own, model="scripted:oracle", out=tmp_path / "b", backend="ray", ray_address=cluster)
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    with pytest.raises(UsageError, match=r'pip install "envfoundry\[ray\]"'):
        envfoundry.evaluate("math", model="scripted:oracle", out=tmp_path / "c", limit=2, backend="ray")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_a_worker_that_loads_another_environment_is_refused(tmp_path, cluster):
    env = envfoundry.load("math")
    env.version = "9.9.9"  # changed after loading: a Ray worker loads another environment
    with pytest.raises(WorkerError, match="loads as math .* in a Ray worker"):
        envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "r", limit=4, backend="ray",
                            ray_address=cluster)
    assert _records(tmp_path / "r") == []
    assert _free_cpus(2) == 2


def test_calibrate_and_audit_run_their_rollouts_on_ray_with_the_same_results(tmp_path, cluster):
    from envfoundry.quality.audit import AuditConfig, audit_env
    from envfoundry.quality.calibrate import CalibrateConfig, calibrate

    cal = {}
    for backend in ("local", "ray"):
        extra = {"backend": "ray", "ray_address": cluster} if backend == "ray" else {}
        cal[backend] = calibrate("math", model="scripted:random", out=tmp_path / f"cal-{backend}",
                                 config=CalibrateConfig(limit=6, samples=2, budget=24), **extra)
    assert cal["local"].summary == cal["ray"].summary
    reports = {}
    for backend in ("local", "ray"):
        extra = {"backend": "ray", "ray_address": cluster} if backend == "ray" else {}
        reports[backend] = audit_env(envfoundry.load("math"), spec="math", config=AuditConfig(
            tasks=4, samples=1, probes=["guessing", "empty", "tool_abuse"], out=tmp_path / f"audit-{backend}", **extra))
    strip = lambda rep: [(p.name, p.verdict, p.n, p.passes, p.right) for p in [rep.baseline, *rep.probes]]  # noqa: E731
    assert strip(reports["local"]) == strip(reports["ray"])
    assert _free_cpus(2) == 2
