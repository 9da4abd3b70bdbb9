"""One resume rule for run, calibrate, audit and train, from Python as from the command line: the stored
configuration is kept; an option given again with another value is refused, naming it; the same value is fine."""

from __future__ import annotations

import pytest

import envfoundry
from envfoundry.core.errors import UsageError
from envfoundry.core.resume import differences, refuse_differences, stored_wins

from .conftest import ROOT, cli

COUNTER = str(ROOT / "examples" / "counter_env.py") + ":make_env"
STORED = {"split": "test", "limit": 3, "samples": 2, "seed": 5, "task_seed": 5, "timeout_s": 60.0, "max_turns": 8}


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rule") / "run"
    envfoundry.evaluate(COUNTER, model="scripted:oracle", out=out, **STORED)
    return out


@pytest.mark.parametrize(("option", "value", "named"), [
    ("split", "train", "--split"), ("limit", 2, "--limit"), ("samples", 3, "--samples"), ("seed", 6, "--seed"),
    ("task_seed", 7, "--task-seed"), ("timeout_s", 30.0, "timeout_s"), ("max_turns", 4, "--max-turns"),
    ("env_args", {"x": "1"}, "env_args"),
])
def test_evaluate_from_python_refuses_a_resumed_option_with_another_value(stored_run, option, value, named):
    with pytest.raises(UsageError, match=rf"{named}.* differs from the run in"):
        envfoundry.evaluate(COUNTER, model="scripted:oracle", out=stored_run, resume=True, **{option: value})
    # the stored value again is fine, and nothing is run twice
    run = envfoundry.evaluate(COUNTER, model="scripted:oracle", out=stored_run, resume=True,
                              **{option: STORED.get(option)} if option in STORED else {})
    assert run.summary["n_trajectories"] == 6


def test_evaluate_names_every_option_that_differs(stored_run):
    with pytest.raises(UsageError) as e:
        envfoundry.evaluate(COUNTER, model="scripted:oracle", out=stored_run, resume=True, seed=1, samples=9,
                            model_options={"sampling": {"temperature": 0.3}})
    assert "--seed 1 differs" in str(e.value) and "--samples 9 differs" in str(e.value)


@pytest.mark.parametrize(("flag", "value"), [("--split", "train"), ("--limit", "2"), ("--samples", "3"),
                                             ("--seed", "6"), ("--task-seed", "7"), ("--timeout", "30"),
                                             ("--max-turns", "4")])
def test_run_resume_from_the_cli_refuses_another_value(stored_run, flag, value):
    r = cli("run", "--out", str(stored_run), "--resume", flag, value, "-q")
    assert r.returncode == 2, r.stderr
    assert f"{flag}" in r.stderr and "differs from the run in" in " ".join(r.stderr.split())


def test_calibrate_from_python_refuses_another_seed(tmp_path):
    from envfoundry.quality.calibrate import CalibrateConfig, calibrate

    out = tmp_path / "cal"
    calibrate(COUNTER, model="scripted:oracle", out=out, config=CalibrateConfig(limit=4, samples=2, budget=8, seed=1))
    with pytest.raises(UsageError, match=r"--seed 2 differs from the calibration in"):
        calibrate(COUNTER, model="scripted:oracle", out=out, resume=True, config=CalibrateConfig(seed=2))
    calibrate(COUNTER, model="scripted:oracle", out=out, resume=True, config=CalibrateConfig(seed=1))


def test_the_rule_itself():
    stored = {"a": 1, "b": None, "c": "x"}
    assert differences(stored, {"a": 1, "b": None, "c": None}, what="it") == []  # None: not given
    assert differences(stored, {"a": 2}, what="the run", names={"a": "--aa"}) == ["--aa 2 differs from the run (1)"]
    assert differences(stored, {"b": 3}, what="it") == ["--b 3 differs from it (not set)"]
    assert differences(stored, {"b": None}, what="it", none_is_unset=False) == []
    assert differences({"b": 1}, {"b": None}, what="it", none_is_unset=False) == ["--b not set differs from it (1)"]
    with pytest.raises(UsageError, match=r"--a 2 differs from it \(1\); --c y differs from it \(x\); resume without"):
        refuse_differences(differences(stored, {"a": 2, "c": "y"}, what="it"))
    assert stored_wins(stored, {"a": 1}, what="it") == stored
