"""`envfoundry check`: built-ins pass; each deliberately broken environment fails the right check."""

import json

import pytest

from envfoundry import load
from envfoundry.quality import CheckConfig, check_env
from tests.conftest import ROOT, TEST_ENVS, cli
from tests.envs import broken


def _status(env, **kw):
    rep = check_env(env, config=CheckConfig(tasks=6, samples=2, subprocess=False, **kw))
    return {r.name: r for r in rep.results}, rep


@pytest.mark.parametrize(
    "factory,check",
    [
        (broken.nondeterministic, "determinism"),
        (broken.unsolvable, "solvable"),
        (broken.crashing_grader, "grader_pure"),
        (broken.mutating_grader, "grader_pure"),
        (broken.crashing_tool, "bad_calls"),
        (broken.leaky, "fork_isolation"),
    ],
)
def test_broken_env_fails_the_right_check(factory, check):
    res, rep = _status(factory())
    assert res[check].status == "fail", res[check]
    assert not rep.ok
    # shared state also makes reruns differ; otherwise only the target check fails
    allowed = {check, "determinism", "replay"} if check == "fork_isolation" else {check}
    assert {n for n, r in res.items() if r.status == "fail"} <= allowed | {"noop_low", "random_low"}
    assert res[check].detail
    if check != "determinism":
        assert res[check].task_id  # the failure names the task


def test_unsolvable_names_the_task():
    res, _ = _status(broken.unsolvable())
    env = broken.unsolvable()
    assert res["solvable"].task_id == env.tasks("test")[3].id


def test_math_passes_check_cli():
    r = cli("check", "math", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] and {c["name"]: c["status"] for c in rep["checks"]}["solvable"] == "pass"


def test_check_cli_exit_1_on_failure_and_2_on_bad_input():
    r = cli("check", "--env", f"{TEST_ENVS / 'broken.py'}:unsolvable")
    assert r.returncode == 1 and "solvable" in r.stdout and "fail" in r.stdout
    r = cli("check", "math", "--tasks", "0")
    assert r.returncode == 2


def test_example_env_passes():
    res, rep = _status(load(f"{ROOT / 'examples' / 'counter_env.py'}:make_env"))
    assert rep.ok, [r for r in rep.results if r.status == "fail"]
    assert res["bad_calls"].status == "pass" and res["fork_isolation"].status == "pass"
