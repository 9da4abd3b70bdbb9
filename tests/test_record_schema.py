"""The trajectory record's type (issue 20): the outcome groups defined once, every record the engine
writes is exactly a ``TrajectoryRecord`` and passes the readers' one check, the check names the
field at fault, a run store carries its ``schema_version`` and every reader refuses a newer one,
and the README's table of the fields is the one printed from the type."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envfoundry
from envfoundry import Environment, Message, PolicyOutput, Score, Task, ToolCall, tool
from envfoundry.cli import main
from envfoundry.core.errors import PolicyError, StoreError
from envfoundry.core.outcome import Outcome, Usage
from envfoundry.core.record import (
    IDENTITY,
    SCHEMA_VERSION,
    UNVERSIONED,
    NewerSchemaError,
    TrajectoryRecord,
    check_record,
)
from envfoundry.core.record_docs import markdown_table
from envfoundry.core.typecheck import check, fast_check
from envfoundry.rollout.engine import RolloutConfig, run_rollout
from envfoundry.rollout.run import Run
from envfoundry.rollout.store import DamagedRunError, RunStore, encode_record

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "envfoundry"
OUTCOMES = {o.value for o in Outcome}


def _cli(capsys, *args: str) -> tuple[int, str]:
    """The command line in this process: its exit code and its stderr, one line."""
    capsys.readouterr()
    code = main(list(args))
    return code, " ".join(capsys.readouterr().err.split())


# ------------------------------------------------------------------------------------ the outcome groups
def test_the_outcome_groups_split_the_outcomes_and_are_plain_strings():
    assert Outcome.SCORED | Outcome.ERRORS == OUTCOMES and not Outcome.SCORED & Outcome.ERRORS
    assert Outcome.CODE_ERRORS < Outcome.ERRORS and Outcome.POLICY_ERROR not in Outcome.CODE_ERRORS
    assert len(Outcome) == 5  # the groups are not members
    for o in Outcome:
        assert o.is_error == (o in Outcome.ERRORS) and o.is_scored == (o in Outcome.SCORED) != o.is_error
    # plain strings: a record's outcome is one, and they serve as JSON keys (orjson refuses an enum key)
    assert all(type(o) is str for o in Outcome.SCORED | Outcome.ERRORS)
    assert orjson.loads(orjson.dumps(dict.fromkeys(Outcome.ERRORS, 0))) == dict.fromkeys(Outcome.ERRORS, 0)


_NAMES = "|".join(sorted(OUTCOMES))
_RETYPED = [
    re.compile(rf'(?:\bin\b|==|!=)\s*[(\[{{]?\s*"(?:{_NAMES})"'),  # r["outcome"] in ("completed", ...) / == "..."
    re.compile(rf'[(\[{{]\s*"(?:{_NAMES})"\s*,\s*"(?:{_NAMES})"'),  # a tuple, list or set of outcome names
    re.compile(r"^\s*(?:[A-Z_]*OUTCOMES|_SCORED|_ERRORS)\s*=", re.M),  # a group of its own
]


def test_no_module_retypes_an_outcome_group():
    found = [f"{p.relative_to(SRC)}: {m.group(0).strip()}" for p in sorted(SRC.rglob("*.py"))
             if p.relative_to(SRC).as_posix() != "core/outcome.py"
             for rx in _RETYPED for m in rx.finditer(p.read_text(encoding="utf-8"))]
    assert not found, "outcome groups belong on core.outcome.Outcome: " + "; ".join(found)


# ------------------------------------------------------------------------------------ the engine writes the type
@tool
def poke(ep, what: str) -> str:
    """Poke something."""
    if what == "env":
        raise RuntimeError("the tool broke")
    return f"poked {what}"


def _grade(g) -> Score:  # noqa: ANN001
    mode = g.task.data["mode"]
    if mode == "grader":
        raise ValueError("the grader broke")
    if mode == "numpy":  # numpy's scalars: stored as JSON's float and bool
        return Score(np.float32(0.75), {"n": np.int64(3)}, "numpy", passed=np.bool_(True))
    if mode == "list":  # not a Score's breakdown: the grader's bug, a grader_error
        return Score(1.0, ["not", "a", "dict"])  # type: ignore[arg-type]
    return Score(1.0, {"mode": mode}, "ok")


class Poker:
    """One tool call with token counts and policy info, then an answer (never, for ``loop``)."""

    async def act(self, ep) -> PolicyOutput:  # noqa: ANN001
        mode = ep.task.data["mode"]
        if mode == "policy":
            raise PolicyError("the server is gone")
        if ep.turns == 0 or mode == "loop":
            return PolicyOutput(Message("assistant", "", [ToolCall("poke", {"what": mode}, "c1")]), Usage(5, 7),
                                {"finish_reason": "tool_calls"})
        return PolicyOutput(Message("assistant", "done"), Usage(3, 2))


MODES = {"ok": "completed", "loop": "truncated", "policy": "policy_error", "env": "env_error",
         "grader": "grader_error", "numpy": "completed", "list": "grader_error"}


def _poke_records() -> list[dict[str, Any]]:
    env = Environment(name="p", version="1", tools=[poke], graders=_grade, max_turns=3,
                      tasks=lambda split, seed: [Task(env="p", env_version="1", split=split, prompt="go",
                                                      data={"mode": m}) for m in MODES])
    tasks = env.tasks("test")

    async def go() -> list[dict[str, Any]]:
        return [await run_rollout(env, t, 0, Poker(), RolloutConfig(max_turns=3)) for t in tasks]
    return asyncio.run(go())


@functools.cache
def _stored_records() -> tuple[dict[str, Any], ...]:
    """Records of built-in environments as stored: math (random answers), shop (a world: world_diff)."""
    import tempfile

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for env, model in (("math", "scripted:random"), ("shop", "scripted:oracle")):
            run = envfoundry.evaluate(env, model=model, out=Path(d) / env, limit=2, samples=2, seed=3)
            out += [json.loads(x) for x in (run.path / "trajectories.jsonl").read_text().splitlines()]
    return tuple(out)


def test_every_record_the_engine_writes_is_exactly_a_trajectory_record():
    recs = _poke_records()
    assert [r["outcome"] for r in recs] == list(MODES.values()), [r["error"] for r in recs]
    assert "breakdown must be a dict" in recs[-1]["error"]
    numpy_rec = recs[list(MODES).index("numpy")]
    assert numpy_rec["score"] == 0.75 and numpy_rec["passed"] is True
    assert {"policy_info", "turn_usage"} <= recs[0].keys()
    stored = list(_stored_records())
    assert any("world_diff" in r for r in stored)
    declared, required = set(TrajectoryRecord.__annotations__), TrajectoryRecord.__required_keys__
    for rec in [*recs, *stored]:
        line = encode_record(rec)  # as stored, and as made in memory
        for r in (rec, orjson.loads(line)):
            assert check_record(r) is None, (check_record(r), rec["outcome"])
            assert required <= r.keys() <= declared, (required - r.keys(), r.keys() - declared)


# ------------------------------------------------------------------------------------ the check names the field
def _good() -> dict[str, Any]:
    return copy.deepcopy(next(r for r in _stored_records() if "world_diff" in r))


def _set(path: str, value: Any) -> dict[str, Any]:
    rec = _good()
    *parents, last = path.split(".")
    at: Any = rec
    for p in parents:
        at = at[int(p)] if isinstance(at, list) else at[p]
    if value is KeyError:
        del at[last]
    elif isinstance(at, list):
        at[int(last)] = value
    else:
        at[last] = value
    return rec


@pytest.mark.parametrize(("path", "value", "says"), [
    ("sample", True, "sample is not an integer"),  # a bool is not an integer
    ("task_id", KeyError, "no task_id"),
    ("outcome", "Completed", "outcome 'Completed' is not one of completed, env_error"),
    ("score", float("nan"), "a completed record without a numeric score"),  # made in memory
    ("passed", "yes", "a completed record without a boolean 'passed'"),
    ("timings.total_s", "slow", "timings.total_s is not a number"),
    ("timings.grade_s", float("inf"), "timings.grade_s is not a number"),
    ("timings", [], "timings is not an object"),
    ("usage.prompt_tokens", 1.5, "usage holds token counts that are not integers: usage.prompt_tokens"),
    ("messages.1", "hello", "messages.1 is not an object"),
    ("messages.0.content", 7, "messages.0.content is not a string"),
    ("messages.2.tool_calls.0.arguments", 3, "messages.2.tool_calls.0 is not a tool call (name and arguments): "
                                             "messages.2.tool_calls.0.arguments is not a string or an object"),
    ("messages.2.tool_calls.0.id", KeyError, "messages.2.tool_calls.0.id is missing"),
    ("world_diff.0.op", "upsert", "world_diff.0.op 'upsert' is not one of delete, insert, update"),
    ("world_diff.0.before", KeyError, "world_diff.0 is not a change (op, table, key, field, before, after): "
                                      "world_diff.0.before is missing"),
    ("world_diff", {}, "world_diff is not a list"),
    ("escaped", "messages.0", "escaped is not a list"),
    ("redacted", [None], "redacted.0 is not a string"),
    ("policy_info", ["x"], "policy_info.0 is not an object"),
    ("split", None, "split is not a string"),
    ("metadata", None, "metadata is not an object"),
])
def test_a_damaged_field_is_named_with_its_path(path: str, value: Any, says: str) -> None:
    assert _good()["messages"][2]["tool_calls"]  # the shop's first turn calls a tool
    why = check_record(_set(path, value))
    assert why is not None and says in why, why


@pytest.mark.parametrize("rec", [
    {"task_id": "t", "sample": 0, "outcome": "policy_error"},  # only what a reader needs
    {"task_id": "t", "sample": 0, "outcome": "completed", "score": 1, "passed": False},  # an int score
    {"task_id": "t", "sample": 0, "outcome": "env_error", "a_later_field": object()},  # undeclared: left alone
    {"task_id": "t", "sample": 0, "outcome": Outcome.TRUNCATED, "score": 0.0, "passed": False,  # in memory
     "messages": [{"role": "user", "content": None}], "metadata": {"deep": [[[{"x": float("nan")}]]]}},
    {"task_id": "t", "sample": 0, "outcome": "grader_error", "world_diff": [
        {"op": "insert", "table": "t", "key": "k", "field": None, "before": None, "after": {"any": ["thing"]}}]},
])
def test_what_a_reader_does_not_need_may_be_absent_or_anything(rec: dict[str, Any]) -> None:
    assert check_record(rec) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "completed", "insert", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["role", "content", "op", "k"]),
                                                                inner, max_size=3),
    max_leaves=6)


def _paths(v: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    for k, x in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
        out += _paths(x, (*prefix, k))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_check_and_the_full_check_agree(data) -> None:  # noqa: ANN001
    """The fast check (written from the type) and the walk that says what is wrong accept
    exactly the same values of JSON's types, whatever is changed where."""
    rec = copy.deepcopy(data.draw(st.sampled_from(_stored_records())))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in _paths(rec) if p]))
        parent = functools.reduce(lambda v, k: v[k], path[:-1], rec)
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_JSON)
    rec = orjson.loads(orjson.dumps(rec))
    need = frozenset(IDENTITY)
    assert fast_check(TrajectoryRecord, need)(rec) == (check(TrajectoryRecord, None, need)(rec) is None)
    why = check_record(rec)
    assert why is None or why.strip() == why and len(why) < 400


# ------------------------------------------------------------------------------------ the schema version
@pytest.fixture
def run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:oracle", out=out, limit=2, samples=1, seed=1)
    return out


def _manifest(run: Path, **changes: Any) -> None:
    m = json.loads((run / "manifest.json").read_text())
    for k, v in changes.items():
        if v is KeyError:
            m.pop(k, None)
        else:
            m[k] = v
    (run / "manifest.json").write_text(json.dumps(m, indent=2))


def _newer(err: str, store: Path) -> None:
    assert f"run store {str(store)!r} has schema version {SCHEMA_VERSION + 1}" in err, err
    assert f"reads schema version {SCHEMA_VERSION} and older" in err and "upgrade envfoundry" in err, err
    assert "damaged" not in err and "Traceback" not in err, err


def test_a_new_run_store_states_its_schema_version_first(run: Path) -> None:
    text = (run / "manifest.json").read_text()
    assert next(iter(json.loads(text))) == "schema_version" and json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert RunStore.open(run).manifest.schema_version == SCHEMA_VERSION


def test_a_store_from_before_versions_reads_as_unversioned(run: Path, capsys) -> None:  # noqa: ANN001
    _manifest(run, schema_version=KeyError)
    assert RunStore.open(run).manifest.schema_version == UNVERSIONED
    assert _cli(capsys, "show", str(run))[0] == 0
    assert _cli(capsys, "run", "--out", str(run), "--resume", "-q")[0] == 0
    assert "schema_version" not in json.loads((run / "manifest.json").read_text())  # a resume keeps it as it was


def test_every_reader_refuses_a_newer_store_and_changes_nothing(run: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _manifest(run, schema_version=SCHEMA_VERSION + 1, task_ids=KeyError, samples="a new shape")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for args in (["show", str(run)], ["show", str(run), "--failed"],
                 ["export", str(run), str(tmp_path / "x.jsonl")], ["export", str(run), str(tmp_path / "x.parquet")],
                 ["export", str(run), str(tmp_path / "t.jsonl"), "--format", "trl"],
                 ["run", "--out", str(run), "--resume", "-q"], ["run", "math", "--out", str(run), "--resume", "-q"]):
        code, err = _cli(capsys, *args)
        assert code == 2, (args, err)
        _newer(err, run)
    assert not list(tmp_path.glob("[xt].*"))
    for fn in (RunStore.open, Run.open, lambda p: envfoundry.evaluate("math", model="scripted:oracle", out=p,
                                                                       resume=True)):
        with pytest.raises(NewerSchemaError) as e:
            fn(run)
        assert isinstance(e.value, StoreError) and not isinstance(e.value, DamagedRunError)
        _newer(str(e.value), run)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_calibrate_refuses_a_newer_round_store(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "cal"
    args = ["calibrate", "math", "--model", "scripted:random", "--limit", "3", "--samples", "2", "--out", str(out)]
    assert _cli(capsys, *args, "--budget", "12", "-q")[0] == 0
    assert (out / "round-2" / "manifest.json").is_file()
    _manifest(out / "round-2", schema_version=SCHEMA_VERSION + 1)
    code, err = _cli(capsys, *args, "--budget", "24", "--resume", "-q")
    assert code == 2
    _newer(err, out / "round-2")


@pytest.mark.parametrize("store", ["probe-empty", "baseline-noop"])
def test_audit_refuses_a_newer_probe_or_baseline_store(tmp_path: Path, capsys, store: str) -> None:  # noqa: ANN001
    out = tmp_path / "aud"
    args = ["audit", "math", "--probes", "empty", "--samples", "1", "--limit", "2", "--out", str(out)]
    assert _cli(capsys, *args)[0] == 0
    _manifest(out / store, schema_version=SCHEMA_VERSION + 1)
    code, err = _cli(capsys, *args, "--resume")
    assert code == 2
    _newer(err, out / store)


@pytest.mark.parametrize(("value", "says"), [
    ("2", "schema_version: Input should be a valid integer"),  # a string is not a version, even of a number
    (True, "schema_version: Input should be a valid integer"),
    (0, "schema_version: Input should be greater than or equal to 1"),
    (None, "schema_version: Input should be a valid integer"),
])
def test_a_schema_version_that_is_not_one_is_damage(run: Path, capsys, value: Any, says: str) -> None:  # noqa: ANN001
    _manifest(run, schema_version=value)
    line = next(i for i, ln in enumerate((run / "manifest.json").read_text().splitlines(), 1)
                if '"schema_version"' in ln)
    code, err = _cli(capsys, "show", str(run))
    assert code == 2 and f"{run / 'manifest.json'}:{line} (damaged?): {says}" in err, err


# ------------------------------------------------------------------------------------ the README's table
def test_the_readme_holds_the_table_printed_from_the_type():
    table = markdown_table()
    assert table.count("\n") == len(TrajectoryRecord.__annotations__) + 2
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(table.splitlines()[0])
    end = readme.find("\n\n", start)
    assert readme[start:end + 1] == table, "the README's table differs: python -m envfoundry.core.record_docs"
    r = subprocess.run([sys.executable, "-m", "envfoundry.core.record_docs"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and r.stdout == table and not r.stderr, r.stderr
