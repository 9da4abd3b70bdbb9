"""`envfoundry check`: built-ins pass; each deliberately broken environment fails the right check."""

import json
import time

import pytest

from envfoundry import load
from envfoundry.quality import CheckConfig, check_env
from tests.conftest import ROOT, TEST_ENVS, cli
from tests.envs import broken


def _status(env, **kw):
    rep = check_env(env, config=CheckConfig(**{"tasks": 6, "samples": 2, "subprocess": False, **kw}))
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


# ------------------------------------------------------------------ issue 19: environments written as a user would
from datetime import UTC, datetime, timedelta  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from envfoundry.core.tools import make_tool  # noqa: E402
from envfoundry.quality.check_calls import base_value, edge_values  # noqa: E402
from envfoundry.quality.check_fresh import other_day_tz  # noqa: E402
from tests.envs import counter_grader, enum_crash, shared_state, task_counts  # noqa: E402


def _failing(rep):
    return {r.name for r in rep.results if r.status == "fail"}


@pytest.mark.parametrize("factory", [
    shared_state.class_session, shared_state.global_world, shared_state.shared_record_list,
    shared_state.default_argument, shared_state.task_scratch, shared_state.id_cache, shared_state.id_world_cache,
])
def test_state_shared_between_rollouts_fails_fork_isolation(factory):
    res, rep = _status(factory())
    iso = res["fork_isolation"]
    assert iso.status == "fail", iso
    assert iso.task_id and iso.example is not None
    assert "interleaved reference-solution rollouts end differently" in iso.detail
    assert res["solvable"].status == "pass"  # the reference solution works: only isolation is broken
    # sharing may also make reruns differ (determinism, replay) or change a task's content (task_ids)
    assert _failing(rep) <= {"fork_isolation", "determinism", "replay", "task_ids"}


def test_class_session_passes_everything_but_fork_isolation():
    """The issue's case: one rollout at a time is fine; stepped in turn, one sees the other's login."""
    res, rep = _status(shared_state.class_session())
    assert _failing(rep) == {"fork_isolation"}
    iso = res["fork_isolation"].detail
    assert iso.startswith("4 of 12 interleaved")  # each different-task pair, in both orders
    assert "stepped in turn with a rollout of task" in iso and "the world's changes differ" in iso


def test_state_shared_within_one_task_names_the_same_task():
    res, _ = _status(shared_state.id_cache())
    assert "with another rollout of the same task" in res["fork_isolation"].detail


def test_world_records_sharing_a_list_report_the_changed_initial_world():
    res, _ = _status(shared_state.shared_record_list())
    d = res["fork_isolation"].detail
    assert "the initial world of 4 of 4 tasks changed" in d
    assert "a second solo rollout" in d and "state carries over from one rollout to the next" in d


@pytest.mark.parametrize("factory,tool,shown,error", [
    (enum_crash.literal_keyerror, "set_status", "status='cancelled'", "KeyError"),
    (enum_crash.enum_unhandled, "prioritise", "priority='urgent'", "UnboundLocalError"),
    (enum_crash.bound_off_by_one, "book_slot", "slot=5", "IndexError"),
    (enum_crash.empty_string, "sign", "name=''", "IndexError"),
    (enum_crash.empty_list, "rate", "stars=[]", "ZeroDivisionError"),
    (enum_crash.optional_null, "note", "text=None", "AttributeError"),
])
def test_allowed_values_that_crash_a_tool_fail_bad_calls(factory, tool, shown, error):
    res, rep = _status(factory())
    bc = res["bad_calls"]
    assert bc.status == "fail", bc
    assert f"{tool}({shown}, ...) raised {error}" in bc.detail
    assert "(at enum_crash.py:" in bc.detail  # where it raised
    assert bc.example["calls"][0]["tool"] == tool
    # the base arguments are the reference solution's, so the id is a real order
    assert bc.example["calls"][0]["arguments"]["order_id"] in enum_crash.ORDERS
    assert _failing(rep) <= {"bad_calls", "random_low"}  # random calls may stumble on it too


def test_bad_calls_counts_every_crash_of_a_tool():
    res, _ = _status(enum_crash.empty_string())
    d = res["bad_calls"].detail
    assert d.startswith("3 of ") and "calls crashed" in d and "in 1 of 1 tools (sign)" in d
    assert "(also name=' ', '\\n')" in d


def _schema_tool():
    from enum import Enum
    from typing import Annotated, Literal

    from pydantic import Field

    class Size(Enum):
        S = "s"
        M = "m"
        L = "l"

    def t(ep, a: Literal["x", "y", "z"], b: Size, c: Annotated[int, Field(ge=1, le=5)],
          d: Literal["p", "q"] | None = None, e: Annotated[float, Field(gt=0, le=2.5)] = 1.0,
          f: Annotated[str, Field(min_length=2, max_length=4)] = "ab", g: list[Size] = [],  # noqa: B006
          h: Annotated[list[int], Field(min_length=1, max_length=3)] = [1], k: bool = False,  # noqa: B006
          n: int = 3, s: Annotated[str, Field(pattern=r"^[A-Z]-\d+$")] = "O-1") -> str:
        """A tool with one argument of each kind."""
        return "ok"

    return make_tool(t)


def test_edge_values_are_allowed_and_cover_members_and_bounds():
    tl = _schema_tool()
    params = tl.schema()["function"]["parameters"]
    props, defs = params["properties"], params.get("$defs", {})
    base = {k: base_value(props[k], defs) for k in params["required"]}
    edges = {k: edge_values(v, defs) for k, v in props.items()}
    for k, values in edges.items():
        assert values or k == "s", k  # no candidate matches s's pattern: none is sent
        for v in values:
            tl.parse_args({**base, k: v})  # every edge value is one the schema allows: raises otherwise
    assert edges["a"] == ["x", "y", "z"] and edges["b"] == ["s", "m", "l"]
    assert set(edges["d"]) == {"p", "q", None}
    assert {1, 5} <= set(edges["c"]) and 0 not in edges["c"] and -1 not in edges["c"]
    assert 2.5 in edges["e"] and 0.0 not in edges["e"]
    assert {"xx", "xxxx"} <= set(edges["f"]) and "" not in edges["f"]
    assert [] in edges["g"] and all([m] in edges["g"] for m in ("s", "m", "l"))
    assert [] not in edges["h"] and all(1 <= len(v) <= 3 for v in edges["h"])
    assert {0, -1} <= set(edges["n"]) and edges["k"] == [True, False]
    assert edges["s"] == []  # only strings the pattern allows


def test_annotated_constraints_reach_the_schema():
    """`Annotated[int, Field(ge=1, le=5)]` in a tool's signature is enforced and shown to the model."""
    c = _schema_tool().schema()["function"]["parameters"]["properties"]["c"]
    assert (c["minimum"], c["maximum"]) == (1, 5)


@pytest.mark.parametrize("factory", ["clock_prompt", "today_system", "set_order"])
def test_time_and_hash_dependent_prompts_fail_determinism_in_a_fresh_process(factory):
    env = load(f"{TEST_ENVS / 'timestamp_prompt.py'}:{factory}")
    rep = check_env(env, config=CheckConfig(tasks=6, samples=1), only=["determinism"])
    det = rep.results[0]
    assert det.status == "fail", det
    assert det.detail.startswith("6 of 6 tasks came out different in a fresh process (prompts differ")
    assert det.example["this_process"] != det.example["fresh_process"]


def test_seeded_date_passes_determinism_in_a_fresh_process():
    env = load(f"{TEST_ENVS / 'timestamp_prompt.py'}:seeded_date")
    det = check_env(env, config=CheckConfig(tasks=6, samples=1), only=["determinism"]).results[0]
    assert det.status == "pass" and "the same in a fresh process" in det.detail


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000))
def test_other_day_tz_gives_another_local_date(now):
    tz = other_day_tz(now)
    sign, hms = tz[3], tz[4:]
    h, m, s = (int(x) for x in hms.split(":"))
    east = (1 if sign == "-" else -1) * (h * 3600 + m * 60 + s)  # POSIX TZ offsets are west-positive
    assert abs(east) <= 24 * 3600
    here = datetime.fromtimestamp(now, UTC) + timedelta(seconds=time.localtime(now).tm_gmtoff)
    there = datetime.fromtimestamp(now + 5, UTC) + timedelta(seconds=east)  # the child runs a few seconds later
    assert here.date() != there.date()


@pytest.mark.parametrize("factory,grader", [
    (counter_grader.counter_grader, "value_with_warmup"),
    (counter_grader.cached_per_task, "value_cached"),
    (counter_grader.default_memory, "value_no_repeats"),
    (counter_grader.last_answer, "value_consistent"),
])
def test_graders_with_memory_fail_grader_pure_by_name(factory, grader):
    res, _ = _status(factory())
    gp = res["grader_pure"]
    assert gp.status == "fail", gp
    assert gp.detail.startswith(f"grader '{grader}' gave the same trajectory different scores")
    assert "digits_only" not in gp.detail  # the pure grader beside it is not blamed
    assert "trajectories changed score" in gp.detail and gp.task_id
    assert len({s for _, s in gp.example["scores"]}) > 1


@pytest.mark.parametrize("spec", [
    f"{TEST_ENVS / 'fair_bank.py'}:make_env",
    f"{TEST_ENVS / 'enum_crash.py'}:handled",
    f"{TEST_ENVS / 'counter_grader.py'}:memo_gold",
    f"{TEST_ENVS / 'timestamp_prompt.py'}:seeded_date",
    f"{ROOT / 'examples' / 'counter_env.py'}:make_env",
])
def test_fair_environments_pass_every_check(spec):
    env = load(spec)
    rep = check_env(env, config=CheckConfig(tasks=6, samples=2))  # with the fresh process
    assert rep.ok, [r for r in rep.results if r.status == "fail"]
    assert all(r.status == "pass" or r.detail == "the environment has no tools" for r in rep.results)


def test_failure_messages_count_tasks():
    res, _ = _status(task_counts.many_unsolvable(), tasks=10)
    assert res["solvable"].detail.startswith("5 of 10 tasks unsolvable by the reference solution")
    assert res["random_low"].detail.startswith("scripted:random passes ") and " of 20 rollouts" in \
        res["random_low"].detail


def test_no_tasks_fails():
    res, rep = _status(task_counts.no_tasks())
    assert not rep.ok and res["tasks"].status == "fail" and "has no tasks" in res["tasks"].detail
    assert res["solvable"].status == "skipped"
    res, rep = _status(task_counts.empty_test_split())
    assert not rep.ok and "split 'train' has tasks: --split train" in res["tasks"].detail
    r = cli("check", "--env", f"{TEST_ENVS / 'task_counts.py'}:no_tasks")
    assert r.returncode == 1 and "has no tasks" in r.stdout, r.stdout + r.stderr


def test_check_cli_names_the_isolation_failure():
    r = cli("check", "--env", f"{TEST_ENVS / 'shared_state.py'}:class_session", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["fork_isolation"]["status"] == "fail"
    # the fresh process sees no login left over from earlier rollouts, so determinism may differ too
    assert {n for n, c in checks.items() if c["status"] == "fail"} <= {"fork_isolation", "determinism"}
