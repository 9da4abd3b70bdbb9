"""The math environment: splits, determinism, knobs and a grader that refuses tricks."""

import pytest

from envfoundry import Message, load
from envfoundry.core.grader import GradeInput
from envfoundry.envs.math.grader import grade_answer


@pytest.fixture(scope="module")
def env():
    return load("math")


def test_splits_disjoint_and_deterministic(env):
    train = env.tasks("train", seed=0)[:3000]
    test = env.tasks("test", seed=0)[:600]
    assert not {t.prompt for t in train} & {t.prompt for t in test}
    assert not {str(t.data["answer"]) + t.prompt for t in train} & {
        str(t.data["answer"]) + t.prompt for t in test}
    assert len({t.id for t in test}) == 600  # unique ids
    assert [t.id for t in env.tasks("test", seed=0)[:50]] == [t.id for t in test[:50]]
    assert [t.id for t in env.tasks("test", seed=1)[:50]] != [t.id for t in test[:50]]


def test_knobs_recorded_and_easy_tasks_present(env):
    tasks = env.tasks("test")[:200]
    levels = {t.metadata["level"] for t in tasks}
    assert levels == {1, 2, 3, 4, 5, 6}
    for t in tasks:
        assert {"digits", "n_ops", "ops", "word", "difficulty"} <= set(t.metadata)
    only_easy = load("envfoundry.envs.math:make_env")  # same factory through module spec
    assert only_easy.name == "math"


def test_reference_answers_are_correct(env):
    from envfoundry.envs.math import make_env
    for t in make_env(levels=[1, 2, 3, 4, 6]).tasks("test")[:100]:
        expr = t.prompt.split(" ", 1)[1].rstrip("?.").replace("is ", "")
        assert eval(expr) == t.data["answer"], t.prompt


def _grade(env, text):
    task = env.tasks("test")[0]
    ep = env.reset(task, seed=0)
    ep.step(Message("assistant", text))
    return task.data["answer"], grade_answer(GradeInput.from_episode(ep))


@pytest.mark.parametrize(
    "template,ok",
    [
        ("<answer>{a}</answer>", True),
        ("Let me think. {a} it is. <answer> {a} </answer>", True),
        ("<answer>{a}</answer> trailing words", True),
        ("", False),
        ("{a}", False),  # not in the block: "contained" in the text is not enough
        ("The answer is {a}.", False),
        ("<answer>{a}</answer><answer>{a}</answer>", False),  # several blocks
        ("<answer>{a} {b}</answer>", False),  # answer spam inside a block
        ("<answer>{b}, {a}</answer>", False),
        ("<answer>{a}</answer> or <answer>{b}</answer>", False),
        ("<answer>x = {a}</answer>", False),
        ("<answer>$\\boxed{{{a}}}$</answer>", False),
        ("<answer>**{a}**</answer>", False),
        ("<answer>{fw}</answer>", False),  # full-width look-alike digits
        ("<answer><answer>{a}</answer>", False),
        ("<ANSWER>{a}</ANSWER>", False),
        ("<answer>{b}</answer>", False),
    ],
)
def test_grader_refuses_tricks(env, template, ok):
    task = env.tasks("test")[0]
    a = task.data["answer"]
    fw = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in str(a))
    _, score = _grade(env, template.format(a=a, b=a + 1, fw=fw))
    assert score.passed is ok and score.value == (1.0 if ok else 0.0), (template, score)
    assert score.explanation


def test_grader_accepts_thousands_commas():
    from envfoundry.envs.math.grader import parse_answer
    assert parse_answer("<answer>1,234</answer>") == (1234, "")
    assert parse_answer("<answer>-12</answer>") == (-12, "")
    assert parse_answer("<answer>12,34</answer>")[0] is None


def test_unknown_level_rejected():
    from envfoundry.envs.math import make_env
    with pytest.raises(ValueError, match="unknown level"):
        make_env(levels=[9])
