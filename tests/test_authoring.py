"""The public authoring API: names stated once, typed factory arguments, named world values."""

import ast
import enum
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import envfoundry
from envfoundry import Environment, EnvLoadError, Message, ProceduralTasks, Score, Task, UsageError, World, load
from envfoundry.core.env_args import convert
from tests.conftest import ROOT, cli

# ------------------------------------------------------------------ the public API


def test_everything_public_is_importable_from_envfoundry():
    for name in envfoundry.__all__:
        assert getattr(envfoundry, name) is not None, name
    for name in ("ProceduralTasks", "GradeInput", "Episode", "World", "Task", "tool", "StateDiffGrader",
                 "RubricGrader", "eq", "register_env", "load", "evaluate"):
        assert name in envfoundry.__all__, name
    assert callable(envfoundry.shared_client)  # public too, imported on first use
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        envfoundry.nothing_here  # noqa: B018


def test_the_example_imports_only_the_public_api():
    tree = ast.parse((ROOT / "examples" / "counter_env.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in modules if m and m.startswith("envfoundry")} == {"envfoundry"}


# ------------------------------------------------------------------ task ids did not move

#: the first tasks' ids as they were before tasks left out their environment's name and version
PINNED = {
    ("math", (), "test"): ["ab1e3d71953fd6d7", "058e6f62a6673008", "ee55216bd2c0a71d"],
    ("support", (), "test"): ["c098fce6f3f84e58", "6625b0f917d4adc3", "4b0700caa684d2b7"],
    ("shop", (("catalog_size", "300"),), "test"): ["b3952b88c32328b5", "29b937a3f980470d"],
    (f"{ROOT / 'examples' / 'counter_env.py'}:make_env", (), "train"): [
        "8010be4f4a53b34a", "470fe57344ff027d", "463bdbdc3e7c3863"],
}


@pytest.mark.parametrize("key", list(PINNED), ids=lambda k: k[0].rpartition("/")[2])
def test_task_ids_are_those_of_earlier_versions(key):
    spec, args, split = key
    env = load(spec, dict(args))
    tasks = env.tasks(split, seed=0)[: len(PINNED[key])]
    assert [t.id for t in tasks] == PINNED[key]
    assert {(t.env, t.env_version) for t in tasks} == {(env.name, env.version)}


# ------------------------------------------------------------------ name and version stated once


def _env(tasks, name="t", version="2"):
    return Environment(name=name, version=version, tasks=tasks, graders=lambda g: Score(1.0))


def test_tasks_without_a_name_get_the_environments_and_the_same_ids():
    explicit = Task(env="t", env_version="2", split="test", prompt="hi", data={"a": 1})
    for source in (lambda split, seed: [Task(split=split, prompt="hi", data={"a": 1})],
                   lambda split, seed: (Task(split=split, prompt="hi", data={"a": 1}) for _ in range(1))):
        (task,) = _env(source).tasks("test")
        assert (task.env, task.env_version, task.id) == ("t", "2", explicit.id)
    assert Task(split="test", prompt="hi").id != explicit.id  # the id still covers the name


def test_a_lazy_source_is_filled_one_task_at_a_time():
    made = []

    class Lazy:
        def __len__(self):
            return 10**9

        def __getitem__(self, i):
            made.append(i)
            return Task(split="test", prompt=f"say {i}")

    tasks = _env(lambda split, seed: Lazy()).tasks("test")
    assert len(tasks) == 10**9 and made == [0]
    assert tasks[5].env == "t" and tasks[5] is tasks[5] and tasks[-1].prompt == f"say {10**9 - 1}"
    assert [t.prompt for t in tasks[2:4]] == ["say 2", "say 3"]


@pytest.mark.parametrize("bad", [{"env": "other"}, {"env_version": "9"}, {"env": "t", "env_version": "1"}])
def test_a_task_of_another_environment_or_version_is_refused(bad):
    env = _env(lambda split, seed: [Task(split=split, prompt="x", **bad)])
    field = "env_version" if "env_version" in bad else "env"
    with pytest.raises(EnvLoadError, match=f"has {field}=.*but its environment is 't' version '2'"):
        env.tasks("test")


def test_without_a_stated_version_tasks_keep_their_own():
    """Older task sources wrote a version on each task and none on the environment: they still work."""
    env = Environment(name="t", graders=lambda g: Score(1.0), tasks=lambda split, seed: [
        Task(env="t", env_version="1", split=split, prompt="a"), Task(split=split, prompt="b")])
    old, new = env.tasks("test")
    assert env.version == "0.1.0" and (old.env_version, new.env_version) == ("1", "0.1.0")
    assert old.id == Task(env="t", env_version="1", split="test", prompt="a").id
    with pytest.raises(EnvLoadError, match="env='u'"):  # the name is checked all the same
        Environment(name="t", graders=lambda g: Score(1.0),
                    tasks=lambda split, seed: [Task(env="u", split=split, prompt="a")]).tasks("test")


def test_a_later_task_of_a_lazy_source_is_checked_when_made():
    class Mixed:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return Task(split="test", prompt=str(i), env="" if i < 2 else "intruder")

    tasks = _env(lambda split, seed: Mixed()).tasks("test")
    assert tasks[1].env == "t"
    with pytest.raises(EnvLoadError, match="env='intruder'"):
        tasks[2]


def test_procedural_source_states_the_splits_once():
    def generate(rng):
        n = rng.randint(0, 10**6)
        return str(n), lambda split: Task(split=split, prompt=f"n={n}")

    env = _env(ProceduralTasks.source(generate, sizes={"train": 40, "dev": 10, "test": 10}))
    assert env.splits == ("train", "dev", "test")
    ids = {s: {t.id for t in env.tasks(s)} for s in env.splits}
    assert [len(v) for v in ids.values()] == [40, 10, 10]
    assert not (ids["train"] & ids["test"]) and not (ids["dev"] & ids["test"])
    # default weights are the sizes in lowest terms: the same split assignment as writing them
    same = _env(ProceduralTasks.source(generate, sizes={"train": 40, "dev": 10, "test": 10},
                                       weights={"train": 4, "dev": 1, "test": 1}))
    assert {t.id for t in same.tasks("test")} == ids["test"]
    with pytest.raises(KeyError, match="no split 'validation'"):
        env.tasks("validation")


@pytest.mark.parametrize("kw, needle", [
    ({"sizes": {}}, "at least one split"),
    ({"sizes": {"train": -1}}, "integers >= 0"),
    ({"sizes": {"train": 5}, "weights": {"test": 1}}, "name different splits"),
    ({"sizes": {"train": 5, "test": 5}, "weights": {"train": 1, "test": 0}}, "weight 0"),
    ({"sizes": {"train": 5}, "weights": {"train": 0}}, "not all 0"),
])
def test_procedural_source_refuses_bad_sizes(kw, needle):
    with pytest.raises(ValueError, match=needle):
        ProceduralTasks.source(lambda rng: ("k", lambda s: Task(split=s, prompt="p")), **kw)


# ------------------------------------------------------------------ typed factory arguments


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


SEEN: dict = {}


def typed_factory(n: int = 1, rate: float = 0.5, fast: bool = False, levels: list[int] | None = None,
                  mode: Literal["tools", "web"] = "tools", tags: tuple[str, ...] = (), path: Path | None = None,
                  colour: Colour = Colour.RED, limit: int | None = None, raw="x", either: int | str = 0):
    SEEN.clear()
    SEEN.update(locals())
    return Environment(name="typed", tasks=lambda split, seed: [Task(split=split, prompt="p")],
                       graders=lambda g: Score(1.0))


SPEC = "tests.test_authoring:typed_factory"


def test_env_args_are_converted_by_the_factorys_hints():
    load(SPEC, {"n": "3", "rate": "0.25", "fast": "yes", "levels": "1, 2,3", "mode": "web", "tags": "a,b",
                "path": "x/y", "colour": "blue", "limit": "none", "raw": "7", "either": "seven"})
    assert SEEN == {"n": 3, "rate": 0.25, "fast": True, "levels": [1, 2, 3], "mode": "web", "tags": ("a", "b"),
                    "path": Path("x/y"), "colour": Colour.BLUE, "limit": None, "raw": "7", "either": "seven"}
    load(SPEC, {"fast": "off", "limit": "", "either": "12", "colour": "RED"})
    assert (SEEN["fast"], SEEN["limit"], SEEN["either"], SEEN["colour"]) == (False, None, 12, Colour.RED)
    load(SPEC, {"n": 5, "levels": [9]})  # a Python caller's values are passed as they are
    assert (SEEN["n"], SEEN["levels"]) == (5, [9])


@pytest.mark.parametrize("arg, value, needle", [
    ("n", "three", "argument n='three': expected an integer (n: int)"),
    ("n", "2.5", "expected an integer"),
    ("rate", "fast", "expected a number (rate: float)"),
    ("fast", "maybe", "expected true or false (fast: bool)"),
    ("levels", "1,x", "argument levels='1,x': item 'x': expected an integer (levels: list[int] | None)"),
    ("mode", "gui", "expected one of tools, web"),
    ("colour", "green", "expected one of RED, BLUE"),
    ("limit", "lots", "limit: int | None"),
])
def test_a_value_that_does_not_fit_is_a_usage_error_naming_the_argument(arg, value, needle):
    with pytest.raises(UsageError) as e:
        load(SPEC, {arg: value})
    assert needle in str(e.value)
    assert "typed_factory" in str(e.value)


@given(st.integers())
def test_integers_round_trip(n):
    assert convert(str(n), int) == n


@given(st.lists(st.integers(min_value=-10**9, max_value=10**9), max_size=20))
def test_integer_lists_round_trip(xs):
    assert convert(",".join(map(str, xs)), list[int]) == xs


def test_built_in_environments_take_typed_arguments_from_the_command_line(tmp_path):
    env = load("shop", {"catalog_size": "300", "fault_rate": "0.2", "max_turns": "9", "mode": "web"})
    assert (env.name, env.max_turns) == ("shop-web", 9)
    assert load("support", {"communication_weight": "0.5", "judge": "none", "max_turns": "7"}).max_turns == 7
    for args, needle in ((["math", "--env-arg", "levels=1,x"], "argument levels='1,x': item 'x': expected an integer"),
                         (["shop", "--env-arg", "fault_rate=lots"], "argument fault_rate='lots': expected"),
                         (["shop", "--env-arg", "mode=gui"], "expected one of tools, web")):
        r = cli("run", *args, "--model", "scripted:oracle", "--limit", "1", "--out", str(tmp_path / "x"))
        assert r.returncode == 2, r.stderr
        assert needle in " ".join((r.stdout + r.stderr).split()) and "Traceback" not in r.stderr


# ------------------------------------------------------------------ named world values


def test_named_values_are_records_of_one_table():
    w = World(values={"counter": 3, "name": "x"})
    assert w.value("counter") == 3 and w.value("missing", None) is None
    assert w.hash() == World({"values": {"counter": {"value": 3}, "name": {"value": "x"}}}).hash()
    f = w.fork()
    f.set_value("counter", 5)
    f.set_value("new", [1])
    assert (w.value("counter"), f.value("counter"), f.value("new")) == (3, 5, [1])
    assert [(c.op, c.key, c.field, c.before, c.after) for c in w.diff(f)] == [
        ("update", "counter", "value", 3, 5), ("insert", "new", None, None, {"value": [1]})]
    with pytest.raises(KeyError, match="no value 'nope' \\(values: counter, name\\)"):
        w.value("nope")
    with pytest.raises(ValueError, match="not both"):
        World({"values": {}}, values={"a": 1})
    assert World(values={"a": 0}).value("a") == 0 and World(values={}).tables() == []


def test_the_example_solves_and_grades_with_named_values():
    env = load(f"{ROOT / 'examples' / 'counter_env.py'}:make_env")
    task = env.tasks("test")[0]
    ep = env.reset(task, seed=1)
    while not (ep.terminated or ep.truncated):
        ep.step(env.reference_action(ep))
    assert env.grade(ep).value == 1.0
    assert ep.world.value("counter") == task.data["target"]
    ep2 = env.reset(task, seed=1)
    ep2.step(Message("assistant", "done"))
    assert env.grade(ep2).value == 0.0
