"""The run store (resume after SIGKILL, refusal to reuse), the CLI's exit codes, export."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import envfoundry
from tests.conftest import TEST_ENVS, cli, start_run

SLOW = f"{TEST_ENVS / 'slow.py'}:make_slow"


def _records(run: Path):
    return [json.loads(x) for x in (run / "trajectories.jsonl").read_text().splitlines() if x]


def test_oracle_noop_on_math(tmp_path):
    r = cli("run", "math", "--model", "scripted:oracle", "--limit", "200", "--samples", "4",
            "--out", str(tmp_path / "o"), "-q")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["pass_rate"] == 1.0 and s["outcomes"]["completed"] == 800 == s["n_trajectories"]
    assert s["pass_at_k"]["4"] == 1.0 and s["pass_rate_ci"][0] > 0.99
    r = cli("run", "math", "--model", "scripted:noop", "--limit", "200", "--samples", "4",
            "--out", str(tmp_path / "n"), "-q")
    s = json.loads((tmp_path / "n" / "summary.json").read_text())
    assert s["pass_rate"] == 0.0 and s["outcomes"]["completed"] == 800
    rec = _records(tmp_path / "n")[0]
    for field in ("task_id", "sample", "outcome", "score", "passed", "messages", "seed", "usage",
                  "timings"):
        assert field in rec
    assert "turn_usage" not in rec  # a scripted policy reports no tokens
    manifest = json.loads((tmp_path / "n" / "manifest.json").read_text())
    for field in ("env", "env_version", "task_ids", "policy", "seed", "package_version",
                  "started_at"):
        assert field in manifest


def test_same_seed_same_results_different_seed_differs(tmp_path):
    def run(seed, name):
        return envfoundry.evaluate("math", model="scripted:random", out=tmp_path / name,
                                   limit=50, samples=2, seed=seed, concurrency=7)
    a, b, c = run(3, "a"), run(3, "b"), run(4, "c")
    def key(r):
        return sorted((x["task_id"], x["sample"], x["score"], x["seed"]) for x in r.records())
    assert key(a) == key(b)
    assert key(a) != key(c)
    assert a.manifest.task_ids == b.manifest.task_ids != c.manifest.task_ids


def test_results_independent_of_concurrency(tmp_path):
    runs = [envfoundry.evaluate("math", model="scripted:random", out=tmp_path / str(k), limit=40,
                                samples=3, concurrency=k) for k in (1, 16)]
    def key(r):
        return sorted((x["task_id"], x["sample"], x["score"]) for x in r.records())
    assert key(runs[0]) == key(runs[1])


def test_kill_9_then_resume(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "envfoundry", "run", "--env", SLOW, "--model", "scripted:oracle",
                          "--samples", "4", "--concurrency", "3", "--out", str(out), "-q"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    traj = out / "trajectories.jsonl"
    deadline = time.time() + 30
    while time.time() < deadline and (not traj.exists() or traj.stat().st_size < 2000):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_before = len(_records(out))
    assert 0 < n_before < 400, n_before
    # a torn last line, as a kill in the middle of a write could leave
    with open(traj, "a") as f:
        f.write('{"task_id": "abc", "sam')
    r = cli("run", "--env", SLOW, "--out", str(out), "--resume", "-q")
    assert r.returncode == 0, r.stderr
    recs = _records(out)
    keys = [(x["task_id"], x["sample"]) for x in recs]
    assert len(keys) == 400 == len(set(keys))
    s = json.loads((out / "summary.json").read_text())
    assert s["n_trajectories"] == 400 and s["pass_rate"] == 1.0 and s["complete"]


def test_resume_reruns_errors_without_duplicates(tmp_path):
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:oracle", out=out, limit=5, samples=2)
    recs = _records(out)
    recs[3]["outcome"], recs[3]["score"], recs[3]["passed"] = "policy_error", None, None
    (out / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = envfoundry.evaluate("math", model="scripted:oracle", out=out, resume=True)
    assert run.summary["n_trajectories"] == 10 and run.summary["outcomes"]["policy_error"] == 0
    assert len((out / "errors.jsonl").read_text().splitlines()) == 1


def test_resume_refuses_other_policy(tmp_path):
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:oracle", out=out, limit=2)
    r = cli("run", "math", "--model", "scripted:noop", "--out", str(out), "--resume")
    assert r.returncode == 2 and "used policy 'scripted:oracle'" in r.stdout + r.stderr


def test_sigint_exits_130_after_flushing(tmp_path):
    out = tmp_path / "run"
    p = start_run(out, "--env", SLOW, "--model", "scripted:oracle", "--samples", "4", "--concurrency", "2")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "--resume" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] is False and s["n_trajectories"] == len(_records(out)) > 0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "--model", "scripted:oracle", "nosuchenv"], "unknown environment 'nosuchenv'"),
        (["run", "--model", "scripted:oracle", "math", "--limit", "-3"], "--limit must be >= 1"),
        (["run", "--model", "scripted:oracle", "math", "--samples", "0"], "samples must be >= 1"),
        (["run", "--model", "scripted:oracle", "math", "--split", "validation"], "has no split 'validation'"),
        (["run", "math", "--model", "scripted:genius"], "unknown scripted policy 'genius'"),
        (["run", "--model", "scripted:oracle", "--env", "missing_file.py:make"], "does not exist"),
        (["run", "--model", "scripted:oracle", "--env", f"{TEST_ENVS / 'broken_import.py'}:make"], "failed to import"),
        (["run", "--model", "scripted:oracle", "--env", f"{TEST_ENVS / 'slow.py'}:nope"], "has no attribute 'nope'"),
        (["run", "--model", "scripted:oracle",
          "--env", f"{TEST_ENVS / 'slow.py'}:not_an_env"], "not an envfoundry Environment"),
        (["run"], "no environment given"),
        (["run", "math", "--resume"], "--resume needs --out"),
        (["show", "/nonexistent/run"], "not a run directory"),
        (["export", "/nonexistent/run", "x.parquet"], "not a run directory"),
        (["run", "--model", "scripted:oracle", "math", "--bogus-flag"], "No such option"),
        (["run", "--model", "scripted:oracle", "math", "--env-arg", "levels"], "--env-arg expects KEY=VALUE"),
        (["run", "--model", "scripted:oracle", "math", "--env-arg", "colour=red"], "does not accept these arguments"),
        (["run", "--model", "scripted:oracle", "math", "--env-arg", "levels=9"], "unknown level(s) [9]"),
        (["run", "--model", "scripted:oracle", "math", "--tool-mode", "bogus"],
         "--tool-mode (tool_mode): Input should be 'auto', 'native' or 'text'"),
        (["run", "--model", "scripted:oracle", "math", "--temperature", "-1"], "--temperature must be >= 0, got -1.0"),
        (["export", "/nonexistent/run", "x.csv"], "not a run directory"),
        # messages are printed as text, not rich markup: install hints like "envfoundry[local]" survive
        (["run", "--model", "scripted:oracle", "math", "--env-arg", "[local]"], "got '[local]'"),
    ],
)
def test_bad_input_exits_2_with_specific_message(args, needle, tmp_path):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in (r.stdout + r.stderr).replace("\n", " "), (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


def test_non_empty_out_refused(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    r = cli("run", "--model", "scripted:oracle", "math", "--limit", "1", "--out", str(tmp_path))
    assert r.returncode == 2 and "not empty" in r.stdout + r.stderr
    assert (tmp_path / "old.txt").read_text() == "keep me"


def test_user_env_file_and_env_error(tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "counter_env.py"
    r = cli("run", "--model", "scripted:oracle",
            "--env", f"{example}:make_env", "--limit", "10", "--samples", "2", "--out",
            str(tmp_path / "c"), "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["pass_rate"] == 1.0
    r = cli("run", "--model", "scripted:oracle", "--env", f"{TEST_ENVS / 'slow.py'}:make_buggy_tool", "--out",
            str(tmp_path / "b"), "-q")
    assert r.returncode == 1  # every rollout an env_error: the run failed, and says so
    assert "5 of 5 rollouts ended in errors" in r.stderr and "ZeroDivisionError" in r.stderr
    recs = _records(tmp_path / "b")
    assert {x["outcome"] for x in recs} == {"env_error"}
    assert all("ZeroDivisionError" in x["error"] and "Traceback" in x["error"] for x in recs)
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["pass_rate"] is None and s["n_errors"] == 5


def test_list_show_export(tmp_path):
    r = cli("list")
    assert r.returncode == 0 and "math" in r.stdout and "2,000" in r.stdout
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:random", out=out, limit=20, samples=2)
    r = cli("show", str(out), "--failed")
    assert r.returncode == 0 and "expected" in r.stdout
    tid = _records(out)[0]["task_id"]
    r = cli("show", str(out), "--task", tid)
    assert r.returncode == 0 and "grader" in r.stdout and "<answer>" in r.stdout
    for fmt in ("parquet", "jsonl"):
        f = tmp_path / f"x.{fmt}"
        r = cli("export", str(out), str(f), "--format", fmt)
        assert r.returncode == 0, r.stderr
        import datasets
        ds = datasets.load_dataset("parquet" if fmt == "parquet" else "json", data_files=str(f),
                                   split="train")
        assert len(ds) == 40 and set(ds["task_id"]) == {x["task_id"] for x in _records(out)}
    r = cli("export", str(out), str(tmp_path / "y"), "--format", "csv")
    assert r.returncode == 2 and "unknown export format 'csv'" in r.stdout + r.stderr
    r = cli("export", str(out), str(tmp_path / "y.jsonl"), "--format", "parquet")  # the suffix must match
    assert r.returncode == 2 and "ending in .parquet" in " ".join(r.stderr.split())
    assert cli("export", str(out), str(tmp_path / "z.jsonl")).returncode == 0  # the format follows the suffix
    assert json.loads((tmp_path / "z.jsonl").read_text().splitlines()[0])["task_id"]


def test_env_args_reach_the_factory_and_survive_resume(tmp_path):
    out = tmp_path / "run"
    r = cli("run", "math", "--env-arg", "levels=1", "--model", "scripted:random", "--limit", "30",
            "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert {x["metadata"]["level"] for x in _records(out)} == {1}
    assert json.loads((out / "manifest.json").read_text())["env_args"] == {"levels": "1"}
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    (out / "trajectories.jsonl").write_text("\n".join(lines[:10]) + "\n")
    r = cli("run", "math", "--out", str(out), "--resume", "-q")  # policy and env args from the manifest
    assert r.returncode == 0, r.stderr
    recs = _records(out)
    assert len(recs) == 30 and {x["metadata"]["level"] for x in recs} == {1}


def test_store_writes_records_with_non_string_keys(tmp_path):
    from envfoundry.rollout.store import RunManifest, RunStore

    m = RunManifest(env="e", env_version="1", env_spec="e", split="test", limit=None, task_ids=["t"],
                    samples=1, seed=0, task_seed=0, policy={"spec": "x"}, concurrency=1, timeout_s=None,
                    max_turns=None, package_version="0", started_at="now", python="3")
    with RunStore.create(tmp_path / "run", m) as store:
        store.append({"task_id": "t", "metadata": {1: "int key", "k": Path("p")}})
        store.append({"task_id": "u", "metadata": {"plain": 1}})
    assert [r["metadata"] for r in _records(tmp_path / "run")] == [{"1": "int key", "k": "p"}, {"plain": 1}]


def test_unusable_outputs_are_usage_errors_and_leave_nothing(tmp_path):
    run = tmp_path / "r1"
    assert cli("run", "math", "--model", "scripted:oracle", "--limit", "2", "--out", str(run), "-q").returncode == 0
    before = (run / "trajectories.jsonl").read_bytes()
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    for args, message in [
        (["export", str(run), str(run / "trajectories.jsonl"), "--format", "trl"], "one of the run's own files"),
        (["export", str(run), str(tmp_path / "adir")], "is a directory"),
        (["export", str(run), str(tmp_path / "afile" / "x.parquet")], "is not a directory"),
        (["run", "--model", "scripted:oracle",
          "math", "--limit", "1", "--out", str(tmp_path / "afile" / "sub")], "cannot create run directory"),
        (["audit", "math", "--tasks", "1", "--out", str(tmp_path / "afile")], "exists and is not a directory"),
        (["calibrate", "math", "--limit", "2", "--model", "bogus", "--out", str(tmp_path / "cal")], "unknown model"),
    ]:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout + r.stderr)
        assert message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr, (args, r.stderr)
    assert (run / "trajectories.jsonl").read_bytes() == before  # the run's own records are untouched
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "cal").exists()

    # success messages print paths as text too
    odd = tmp_path / "[red]run"
    r = cli("run", "math", "--model", "scripted:oracle", "--limit", "1", "--out", str(odd), "-q")
    assert r.returncode == 0 and "[red]run" in r.stdout
    r = cli("export", str(odd), str(tmp_path / "[red]x.jsonl"))
    assert r.returncode == 0 and "[red]x.jsonl" in " ".join(r.stdout.split())



def test_resume_refuses_changed_options_instead_of_ignoring_them(tmp_path):
    run = tmp_path / "r"
    assert cli("run", "--model", "scripted:oracle", "math", "--limit", "3", "--out", str(run), "-q").returncode == 0
    for args in (["--samples", "2"], ["--seed", "5"], ["--limit", "4"], ["--max-turns", "2"]):
        r = cli("run", "math", "--out", str(run), "--resume", "-q", *args)
        assert r.returncode == 2 and f"{args[0]} {args[1]} differs from the run" in " ".join(r.stderr.split()), r.stderr
    assert cli("run", "math", "--out", str(run), "--resume", "--limit", "3", "--samples", "1", "-q").returncode == 0


def test_show_reads_partial_runs_and_names_damaged_lines(tmp_path):
    run = tmp_path / "r"
    assert cli("run", "math", "--model", "scripted:oracle", "--limit", "3", "--out", str(run), "-q").returncode == 0
    lines = (run / "trajectories.jsonl").read_text().splitlines()
    (run / "trajectories.jsonl").write_text(lines[0] + "\n" + '{"task_id": "tor')  # partial, with a torn last line
    r = cli("show", str(run))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "1 of 3 rollouts are stored" in " ".join(r.stderr.split())
    (run / "trajectories.jsonl").write_text(
        lines[0] + '\n{"bad": 1}\n["x"]\n{"task_id": "t", "sample": 0, "outcome": "completed", "score": null}\n'
        '{"task_id": ["a"], "sample": 0, "outcome": "policy_error"}\n'
        '{"task_id": "t", "sample": "zz", "outcome": "policy_error"}\n'
        '{"task_id": "t[/]", "sample": 1, "outcome": "bogus"}\n')
    # a damaged line (here the second) is damage for every reader: FILE:LINE, exit 2 (issue 18)
    for args in (["show", str(run)], ["export", str(run), str(tmp_path / "x.parquet")],
                 ["export", str(run), str(tmp_path / "x.jsonl")],
                 ["export", str(run), str(tmp_path / "v.jsonl"), "--format", "verl"]):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"{run / 'trajectories.jsonl'}:2 (damaged?): no task_id, sample, outcome" in " ".join(r.stderr.split())
    assert cli("run", "math", "--out", str(run), "--resume", "-q").returncode == 0  # set aside; they run again
    assert len(_records(run)) == 3 and len((run / "set_aside.jsonl").read_text().splitlines()) == 6
    assert cli("show", str(run)).returncode == 0
    assert cli("show", str(run), "--limit", "-1").returncode == 2


def test_damaged_manifest_and_exiting_factory_are_reported_in_one_line(tmp_path):
    run = tmp_path / "r"
    assert cli("run", "--model", "scripted:oracle", "math", "--limit", "1", "--out", str(run), "-q").returncode == 0
    (run / "manifest.json").write_text('{"env": 3}')
    r = cli("show", str(run))
    err = " ".join(r.stderr.split())
    assert r.returncode == 2 and "(damaged?): env: Input should be a valid string" in err
    assert "pydantic.dev" not in err
    (tmp_path / "ex.py").write_text("import sys\n\n\ndef f():\n    sys.exit(3)\n")
    r = cli("check", f"{tmp_path / 'ex.py'}:f")
    assert r.returncode == 2 and "called sys.exit(3)" in r.stderr


def test_export_next_to_the_store_files_and_resume_with_an_explicit_split(tmp_path):
    run = tmp_path / "r"
    assert cli("run", "--model", "scripted:oracle",
               "math", "--limit", "2", "--split", "train", "--out", str(run), "-q").returncode == 0
    assert cli("export", ".", "out.parquet", cwd=run).returncode == 0  # beside the store's files is fine
    r = cli("run", "math", "--out", str(run), "--resume", "--split", "test", "-q")
    assert r.returncode == 2 and "--split test differs from the run" in " ".join(r.stderr.split())
    (tmp_path / "exits.py").write_text("import sys\n\nsys.exit(0)\n")
    r = cli("check", f"{tmp_path / 'exits.py'}:f")
    assert r.returncode == 2 and "called sys.exit(0) while importing" in " ".join(r.stderr.split())


def test_slots_are_refused_for_models_that_have_none(tmp_path):
    for model, slots, msg in (("scripted:oracle", "2", "--slots applies to --model local"),
                              ("local", "0", "--slots must be >= 1")):
        r = cli("run", "math", "--model", model, "--slots", slots, "--out", str(tmp_path / "r"))
        assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_resume_keeps_the_stored_model_options_and_refuses_others(tmp_path):
    """A resumed run samples as the run began (base URL, temperature, top-p, max tokens, tool
    mode from the manifest); a differing option is refused; the concurrency may change."""
    from envfoundry.testing import StubServer

    run = tmp_path / "r"
    opts = ["--temperature", "0.3", "--top-p", "0.9", "--max-tokens", "17", "--tool-mode", "text",
            "--model-seed", "5"]
    with StubServer(reply="<answer>4</answer>").run_in_thread() as url:
        r = cli("run", "shop", "--model", "openai:stub", "--base-url", url, *opts, "--limit", "3",
                "--max-turns", "1", "--out", str(run), "-q")
        assert r.returncode == 0, r.stderr
        lines = (run / "trajectories.jsonl").read_text().splitlines(keepends=True)
        (run / "trajectories.jsonl").write_text(lines[0])  # two rollouts to run again
        for bad, stored in ((["--top-p", "0.5"], "0.9"), (["--tool-mode", "native"], "text"),
                            (["--model-seed", "6"], "5"), (["--env-arg", "x=1"], "{}")):
            r = cli("run", "--out", str(run), "--resume", "-q", *bad)
            err = " ".join(r.stderr.split())
            assert r.returncode == 2 and f"differs from the run in '{run}' ({stored})" in err, err
        r = cli("run", "--out", str(run), "--resume", "-q", "--concurrency", "1", *opts[:4])
        assert r.returncode == 0, r.stderr
    assert len(_records(run)) == 3


def test_resumed_requests_use_the_stored_sampling(tmp_path):
    from envfoundry.testing import StubServer

    run = tmp_path / "r"
    srv = StubServer(reply="<answer>4</answer>")
    with srv.run_in_thread() as url:
        r = cli("run", "shop", "--model", "openai:stub", "--base-url", url, "--top-p", "0.9", "--max-tokens", "17",
                "--tool-mode", "text", "--limit", "2", "--max-turns", "1", "--out", str(run), "-q")
        assert r.returncode == 0, r.stderr
        first = srv.requests[0]
        lines = (run / "trajectories.jsonl").read_text().splitlines(keepends=True)
        (run / "trajectories.jsonl").write_text(lines[0])
        n = srv.n_requests
        assert cli("run", "--out", str(run), "--resume", "-q").returncode == 0  # no --base-url: the stored one
        resumed = srv.requests[n:]
    assert len(resumed) == 1 and "tools" not in first  # text tool protocol: no native tools
    for body in (first, resumed[0]):
        assert body["top_p"] == 0.9 and body["max_tokens"] == 17 and "tools" not in body
    assert resumed[0]["temperature"] == first["temperature"]


def test_a_run_of_an_environment_file_resumes_from_another_directory(tmp_path):
    import shutil

    here = tmp_path / "work"
    here.mkdir()
    shutil.copy(Path(__file__).parents[1] / "examples" / "counter_env.py", here / "my-env.v2.py")
    assert cli("run", "--model", "scripted:oracle",
               "my-env.v2.py:make_env", "--limit", "3", "--out", "r", "-q", cwd=here).returncode == 0
    manifest = json.loads((here / "r" / "manifest.json").read_text())
    assert manifest["env_spec"] == f"{here / 'my-env.v2.py'}:make_env"  # absolute: resumable from anywhere
    lines = (here / "r" / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (here / "r" / "trajectories.jsonl").write_text(lines[0])
    r = cli("run", "--out", str(here / "r"), "--resume", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(_records(here / "r")) == 3
    # naming the environment again, relatively, from its own directory, is the same environment
    assert cli("run", "my-env.v2.py:make_env", "--out", "r", "--resume", "-q", cwd=here).returncode == 0


def test_a_resume_that_cannot_rewrite_its_records_says_so_in_one_line_and_loses_nothing(tmp_path):
    import resource

    run = tmp_path / "r"
    assert cli("run", "--model", "scripted:oracle",
               "math", "--limit", "200", "--samples", "2", "--out", str(run), "-q").returncode == 0
    traj = run / "trajectories.jsonl"
    with open(traj, "ab") as f:
        f.write(b'{"task_id": "torn')  # a killed run's last line: the resume rewrites the file without it
    before = traj.read_bytes()

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "--out", str(run), "--resume", "-q"],
                       capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    err = " ".join(r.stderr.split())
    assert "File too large" in err and str(traj) in err and "--resume" in err and "Traceback" not in err, err
    assert traj.read_bytes() == before and not list(run.glob(".*tmp"))
    assert cli("run", "--out", str(run), "--resume", "-q").returncode == 0
    assert len(_records(run)) == 400


def test_a_resumed_run_keeps_what_the_summary_needs_not_the_messages(tmp_path):
    from envfoundry.rollout.store import RunStore
    from envfoundry.rollout.summary import Summary

    run = tmp_path / "r"
    assert cli("run", "math", "--model", "scripted:random", "--limit", "20", "--samples", "2", "--out", str(run),
               "-q").returncode == 0
    full = _records(run)
    size = (run / "trajectories.jsonl").stat().st_mtime_ns
    done = RunStore.open(run).prepare_resume()
    assert (run / "trajectories.jsonl").stat().st_mtime_ns == size  # nothing to drop: not rewritten
    assert len(done) == 40 and all("messages" not in r for r in done.values())
    light, whole = Summary(), Summary()
    for r in done.values():
        light.add(r)
    for r in full:
        whole.add(r)
    assert light.result(samples=2) == whole.result(samples=2)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_huge_concurrency_runs_no_more_rollouts_at_once_than_there_are(tmp_path, workers):
    r = cli("run", "--model", "scripted:oracle",
            "math", "--limit", "2", "--concurrency", "100000", "--workers", workers,
            "--out", str(tmp_path / "r"), "-q", timeout=60)  # was: a billion coroutines, never ending
    assert r.returncode == 0, r.stderr
    assert len(_records(tmp_path / "r")) == 2


@pytest.mark.parametrize(("source", "says"), [
    ("1/0", "raised ZeroDivisionError: division by zero"),
    ("None", "returned NoneType, not a list of Task"),
    ("[1, 2]", "returned a list of int, not of Task"),
])
def test_a_task_source_that_fails_is_one_clear_line_in_every_command(tmp_path, source, says):
    code = (Path(__file__).parents[1] / "examples" / "counter_env.py").read_text()
    source_line = 'tasks=ProceduralTasks.source(_generate, sizes={"train": 400, "test": 100}),'
    assert source_line in code
    env = tmp_path / "e.py"
    env.write_text(code.replace(source_line, f"tasks=lambda split, seed: {source},"))
    spec = f"{env}:make_env"
    for args in (["run", "--model", "scripted:oracle", spec, "--out", str(tmp_path / "r"), "-q"], ["check", spec],
                 ["calibrate", spec, "--model", "scripted:random", "--out", str(tmp_path / "c")],
                 ["audit", spec, "--out", str(tmp_path / "a")]):
        r = cli(*args)
        err = " ".join(r.stderr.split())
        assert r.returncode == 2 and f"the task source of environment 'counter' (split 'test', seed 0) {says}" in err
        assert "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_an_empty_selection_is_refused(tmp_path):
    r = cli("run", "--model", "scripted:oracle", "math", "--limit", "0", "--out", str(tmp_path / "r"), "-q")
    assert r.returncode == 2 and "--limit must be >= 1" in r.stderr
    with pytest.raises(envfoundry.core.errors.UsageError, match=r"--limit \(limit\): .* 1, got 0"):
        envfoundry.evaluate("math", model="scripted:oracle", out=tmp_path / "r", limit=0)
    with pytest.raises(envfoundry.core.errors.UsageError, match="no tasks to run"):  # a selection of none
        envfoundry.evaluate("math", model="scripted:oracle", out=tmp_path / "r", task_ids=[])
    assert not (tmp_path / "r").exists()


def test_small_refusals_name_the_problem(tmp_path):
    from envfoundry import __version__

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"envfoundry {__version__}"
    r = cli("check", f"{tmp_path}:make_env")
    assert r.returncode == 2 and "is a directory; give path/to/file.py:factory" in " ".join(r.stderr.split())
    r = cli("run", "--model", "scripted:oracle", "math", "--timeout", "nan", "--out", str(tmp_path / "r"), "-q")
    assert r.returncode == 2 and "--timeout must be a finite number, got nan" in r.stderr
    assert cli("run", "--model", "scripted:oracle",
               "math", "--limit", "1", "--out", str(tmp_path / "r"), "-q").returncode == 0
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    r = cli("export", str(tmp_path / "r"), str(tmp_path / "loopA" / "x.parquet"))
    assert r.returncode == 2 and "cannot be resolved" in r.stderr and "Traceback" not in r.stderr


def test_resume_reads_the_key_from_the_same_variable_and_never_stores_the_key(tmp_path, monkeypatch):
    from envfoundry.testing import StubServer

    run = tmp_path / "r"
    secret = "sk-test-RESUME-42"
    monkeypatch.setenv("MY_KEY", secret)
    srv = StubServer(reply="<answer>4</answer>")
    with srv.run_in_thread() as url:
        r = cli("run", "math", "--model", "openai:stub", "--base-url", url, "--api-key-env", "MY_KEY", "--limit", "2",
                "--out", str(run), "-q")
        assert r.returncode == 0, r.stderr
        lines = (run / "trajectories.jsonl").read_text().splitlines(keepends=True)
        (run / "trajectories.jsonl").write_text(lines[0])
        n = srv.n_requests
        assert cli("run", "--out", str(run), "--resume", "-q").returncode == 0
        resumed = srv.headers[n:]
    assert resumed and all(h.get("Authorization") == f"Bearer {secret}" for h in resumed)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["policy"]["api_key_env"] == "MY_KEY"
    assert all(secret not in f.read_text() for f in run.iterdir())


def test_records_with_damaged_token_counts_are_damage_not_a_crash(tmp_path):
    run = tmp_path / "r"
    assert cli("run", "math", "--model", "scripted:oracle", "--limit", "3", "--out", str(run), "-q").returncode == 0
    recs = _records(run)
    recs[1]["usage"] = {"completion_tokens": None}
    (run / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = cli("show", str(run))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "trajectories.jsonl:2 (damaged?): usage holds token counts that are not integers" in " ".join(
        r.stderr.split())
    assert cli("run", "--out", str(run), "--resume", "-q").returncode == 0
    assert len(_records(run)) == 3 and all(isinstance(r["usage"], dict) for r in _records(run))


def test_a_lazy_task_source_is_neither_refused_nor_listed():
    from envfoundry import Environment, Message, Score, Task

    class Lazy:  # len() and indexing, no Sequence base class: made one task at a time
        made = 0

        def __len__(self) -> int:
            return 10**9

        def __getitem__(self, i: int) -> Task:
            Lazy.made += 1
            return Task(env="lazy", env_version="1", split="test", prompt=f"say {i}")

        def __iter__(self):
            return (self[i] for i in range(len(self)))

    env = Environment(name="lazy", version="1", tasks=lambda split, seed: Lazy(),
                      graders=lambda g: Score(1.0), reference=lambda ep: Message("assistant", "x"))
    tasks = env.tasks("test")
    assert isinstance(tasks, Lazy) and Lazy.made == 1
