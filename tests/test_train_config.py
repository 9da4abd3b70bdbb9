"""A training's configuration is built in one place (train.config.build_config) for the CLI and Python."""

import pytest

from envfoundry.core.errors import UsageError
from envfoundry.train.config import TrainConfig, build_config


def test_given_options_override_a_stored_configuration_and_none_means_not_given(tmp_path):
    stored = TrainConfig(env="math", steps=5, group_size=2, batch=4, seed=3)
    cfg = build_config(env="math", options={"steps": 9, "seed": None}, stored=stored)
    assert (cfg.steps, cfg.seed, cfg.group_size, cfg.batch) == (9, 3, 2, 4)


def test_a_model_path_and_a_calibration_are_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    cfg = build_config(env="math", options={"model": "m.gguf"}, calibration="cal")
    assert cfg.model == str(tmp_path / "m.gguf") and cfg.calibration == str(tmp_path / "cal")
    assert build_config(env="math", options={"model": "local"}).model == "local"


@pytest.mark.parametrize("options,needle", [
    ({"group_size": 1}, "bad --samples"),
    ({"eval_tasks": -1}, "bad --eval-limit"),
    ({"batch": 6, "group_size": 4}, "must be a multiple of --samples"),
    ({"temperature": 0}, "bad --temperature"),
    ({"steps": "many"}, "bad --steps"),
])
def test_a_bad_option_is_named_as_the_cli_spells_it(options, needle):
    with pytest.raises(UsageError, match=needle):
        build_config(env="math", options=options)


def test_an_eval_limit_beyond_the_held_out_split_is_said_not_silent():
    import envfoundry
    from envfoundry.train.run import _eval_task_ids

    env = envfoundry.load("support")
    n = len(env.tasks("test"))
    cfg = TrainConfig(env="support", eval_tasks=n + 50)
    with pytest.warns(UserWarning, match=rf"--eval-limit {n + 50}: support split 'test' has {n} tasks"):
        ids = _eval_task_ids(env, cfg, set())
    assert len(ids) == n
    first = env.tasks("test")[0].id
    with pytest.warns(UserWarning, match="1 of them training tasks"):
        assert first not in _eval_task_ids(env, cfg, {first})
