"""``ledger``: a fund's general ledger written entirely in the declarative format (no Python in its
folder). The reference solution passes, doing nothing or acting at random does not, and each
failure mode the tasks are built around (off-by-cents breaks, transposed digits, stale prices,
entries in the wrong period, a line with two candidates, closed periods, rate changes) fails an
agent that falls for it."""

from __future__ import annotations

import copy
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from envfoundry import Message, ToolCall, evaluate, load
from envfoundry.quality.check import CheckConfig, check_env
from tests.conftest import ROOT

FOLDER = ROOT / "src" / "envfoundry" / "envs" / "ledger"
TYPES = {"reconcile_bank", "resolve_break", "reverse_duplicate", "accrue_fee", "fx_revaluation", "nav_per_share",
         "posting_request"}


@pytest.fixture(scope="module")
def env():
    return load("ledger")


@pytest.fixture(scope="module")
def train(env):
    return list(env.tasks("train")[:400])


def _actions(task) -> list[Message]:
    out = []
    for s in task.data["solution"]:
        if "tool" in s:
            out.append(Message("assistant", "", [ToolCall(s["tool"], copy.deepcopy(s["args"]))]))
        else:
            out.append(Message("assistant", s["text"]))
    return out


def _grade(env, task, actions):
    ep = env.reset(task, seed=0)
    for a in actions:
        if ep.terminated or ep.truncated:
            break
        ep.step(a)
    return env.grade(ep)


def _calls(actions, tool):
    return [a for a in actions if a.tool_calls and a.tool_calls[0].name == tool]


def _find(tasks, kind, **meta):
    hits = [t for t in tasks if t.data["type"] == kind and all(t.metadata.get(k) == v for k, v in meta.items())]
    assert hits, f"no {kind} task with {meta} among {len(tasks)}"
    return hits[:3]


def test_the_folder_holds_no_python():
    files = [p.relative_to(FOLDER) for p in FOLDER.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files and not [f for f in files if f.suffix in (".py", ".pyc", ".pyx", ".so")]
    r = subprocess.run(["git", "ls-files", str(FOLDER)], cwd=ROOT, capture_output=True, text=True)
    assert not [f for f in r.stdout.split() if f.endswith(".py")]


def test_by_name_and_by_folder_it_is_the_same_environment(env):
    other = load(str(FOLDER))
    assert [t.id for t in env.tasks("test")[:20]] == [t.id for t in other.tasks("test")[:20]]
    assert len(env.tasks("train")) + len(env.tasks("test")) >= 2000
    assert env.loaded_from == ("ledger", {})


def test_the_tasks_cover_every_type_and_failure_mode(train):
    kinds = Counter(t.data["type"] for t in train)
    assert set(kinds) == TYPES
    meta = [t.metadata for t in train]
    assert {m["difficulty"] for m in meta} == {1, 2, 3}
    for kind, key in [("reconcile_bank", "small_breaks"), ("reconcile_bank", "big_breaks"),
                      ("reconcile_bank", "wrong_period"), ("reconcile_bank", "twin"), ("resolve_break", "transposed"),
                      ("nav_per_share", "stale_price"), ("reverse_duplicate", "transposed_ref"),
                      ("fx_revaluation", "future_rate")]:
        assert any(m["type"] == kind and m[key] for m in meta), (kind, key)
    assert {m["variant"] for m in meta if m["type"] == "posting_request"} == {"open", "closed", "over_limit"}
    assert {m["rate_change"] for m in meta if m["type"] == "accrue_fee"} == {"none", "at_start", "mid", "prior"}


def test_the_oracle_passes_and_doing_nothing_or_guessing_does_not(env, tmp_path):
    oracle = evaluate(env, model="scripted:oracle", out=tmp_path / "oracle", limit=200)
    assert oracle.summary["n_scored"] == 200 and oracle.summary["pass_rate"] == 1.0
    noop = evaluate(env, model="scripted:noop", out=tmp_path / "noop", limit=100)
    assert noop.summary["passes"] == 0 and noop.summary["mean_score"] == 0.0
    rnd = evaluate(env, model="scripted:random", out=tmp_path / "random", limit=100, samples=2)
    assert rnd.summary["n_errors"] == 0 and rnd.summary["pass_rate"] < 0.05


def test_the_conformance_checks_pass(env):
    report = check_env(env, spec="ledger", config=CheckConfig(tasks=6, samples=1))
    assert report.ok, [r.to_dict() for r in report.results if r.status == "fail"]


# ------------------------------------------------------------------ falling for the traps
def test_matching_a_line_by_amount_misses_its_twin(env, train):
    for task in _find(train, "reconcile_bank", twin=True):
        acts = _actions(task)
        assert _grade(env, task, acts).passed
        world = task.world["tables"]
        missing = {c.tool_calls[0].arguments["ref"] for c in _calls(acts, "post_entry")}
        lines = [r for r in world["bank_lines"].values() if r["ref"] in missing]
        twin = next(ln for ln in lines if sum(abs(o["amount"]) == abs(ln["amount"])
                                              for o in world["bank_lines"].values()) == 2)
        wrong = [a for a in acts if not (a.tool_calls and a.tool_calls[0].name == "post_entry"
                                         and a.tool_calls[0].arguments["ref"] == twin["ref"])]
        assert not _grade(env, task, wrong).passed


def test_forcing_a_big_break_through_5900_breaks_the_rules(env, train):
    for task in _find(train, "resolve_break", over_threshold=True):
        acts = _actions(task)
        esc = _calls(acts, "escalate")[0].tool_calls[0].arguments
        line = task.world["tables"]["bank_lines"][esc["subject"]]
        forced = _calls(acts, "escalate")[0]
        forced.tool_calls[0] = ToolCall("post_entry", {
            "date": line["date"], "debit": "5900", "credit": "1000", "amount": esc["amount"], "ref": line["ref"]})
        look = Message("assistant", "", [ToolCall("get_period", {"period": line["date"][:7]})])
        acts.insert(acts.index(forced), look)
        score = _grade(env, task, acts)
        assert not score.passed and score.value == 0.0
        assert not score.breakdown["rules"]["no_forced_breaks"]["ok"]


def test_posting_a_closed_period_request_fails_twice(env, train):
    for task in _find(train, "posting_request", variant="closed"):
        acts = _actions(task)
        req = task.world["tables"]["requests"][task.data["params"]["request_id"]]
        reject = _calls(acts, "reject_request")[0]
        reject.tool_calls[0] = ToolCall("post_entry", {k: req[k] for k in ("date", "debit", "credit", "amount")}
                                        | {"ref": req["id"]})
        score = _grade(env, task, acts)
        assert not score.passed
        assert not score.breakdown["rules"]["no_closed_period_posting"]["ok"]
        assert score.breakdown["state"]["breakdown"]["collateral_records"] == 1


def test_posting_without_looking_up_the_period_breaks_the_rules(env, train):
    task = _find(train, "accrue_fee")[0]
    acts = [a for a in _actions(task) if not _calls([a], "get_period")]
    score = _grade(env, task, acts)
    assert score.breakdown["state"]["passed"] and not score.passed
    assert not score.breakdown["rules"]["check_period_before_posting"]["ok"]


def test_a_stale_feed_price_gives_a_wrong_nav(env, train):
    for task in _find(train, "nav_per_share", stale_price=True):
        acts = _actions(task)
        world = task.world["tables"]
        end = task.data["params"]["valuation_date"]
        nav = task.data["answer"]["value"] * world["fund"]["FUND"]["shares_outstanding"]
        for sec, pos in world["positions"].items():
            feed = max((p for p in world["prices"].values() if p["security"] == sec and p["date"] <= end),
                       key=lambda p: p["date"])
            if feed["date"] < end:  # the stale one: the feed's last price instead of the custodian's
                nav += pos["quantity"] * (feed["price"] - pos["custodian_price"])
        shares = world["fund"]["FUND"]["shares_outstanding"]
        acts[-1] = Message("assistant", f"<answer>{nav / shares:.4f}</answer>")
        assert _grade(env, task, _actions(task)).passed
        assert not _grade(env, task, acts).passed


def test_a_rate_change_mid_month_does_not_apply_to_the_month(env, train):
    for task in _find(train, "accrue_fee", rate_change="mid"):
        world = task.world["tables"]
        rows = sorted(world["fee_schedule"].values(), key=lambda r: r["effective_from"])
        post = _calls(acts := _actions(task), "post_entry")[0].tool_calls[0]
        period = task.data["params"]["period"]
        nav = next(r["nav"] for d, r in world["nav_history"].items() if d < period + "-01" and d == max(
            x for x in world["nav_history"] if x < period + "-01"))
        days = int(post.arguments["date"][-2:])
        post.arguments["amount"] = round(nav * rows[-1]["rate_bps"] / 10000 * days / 365, 2)  # the new rate: wrong
        assert not _grade(env, task, acts).passed


def test_the_fx_revaluation_needs_the_month_end_eurusd_rate(env, train):
    for task in _find(train, "fx_revaluation", future_rate=True):
        acts = _actions(task)
        post = _calls(acts, "post_entry")[0].tool_calls[0]
        post.arguments["amount"] = round(post.arguments["amount"] * 1.01 + 0.5, 2)  # another day's rate
        assert not _grade(env, task, acts).passed


def test_reversing_the_first_entry_or_in_a_closed_period_fails(env, train):
    for task in _find(train, "reverse_duplicate", in_open_period=False):
        acts = _actions(task)
        rev = _calls(acts, "reverse_entry")[0].tool_calls[0]
        first = sorted((e for e in task.world["tables"]["entries"].values()
                        if e["ref"] == task.data["params"]["invoice"]), key=lambda e: e["id"])[0]
        wrong_entry = copy.deepcopy(acts)
        _calls(wrong_entry, "reverse_entry")[0].tool_calls[0].arguments["entry_id"] = first["id"]
        assert not _grade(env, task, wrong_entry).passed
        dup = task.world["tables"]["entries"][rev.arguments["entry_id"]]
        closed = copy.deepcopy(acts)  # dated like the entry it reverses, in its closed period
        _calls(closed, "reverse_entry")[0].tool_calls[0].arguments["date"] = dup["date"]
        _calls(closed, "get_period")[0].tool_calls[0].arguments["period"] = dup["date"][:7]
        score = _grade(env, task, closed)
        assert not score.passed and not score.breakdown["rules"]["no_closed_period_posting"]["ok"]
        assert rev.arguments["date"].endswith("-01")  # the first day of the open period


def test_the_world_is_a_consistent_ledger(train):
    for task in train[:60]:
        w = task.world["tables"]
        open_periods = [p for p in w["periods"].values() if p["status"] == "open"]
        assert len(open_periods) == 1
        for e in w["entries"].values():
            assert e["amount"] > 0 and e["debit"] != e["credit"] and e["period"] == e["date"][:7]
            assert e["period"] <= open_periods[0]["period"]
        st = w["statements"][f"ST-1000-{open_periods[0]['period']}"]
        lines = [ln["amount"] for ln in w["bank_lines"].values() if ln["statement"] == st["id"]]
        assert round(st["opening_balance"] + sum(lines), 2) == pytest.approx(st["closing_balance"], abs=0.005)


def test_the_prompts_never_show_the_amounts_to_post(train):
    for task in train[:200]:
        if task.data["type"] == "reverse_duplicate":
            continue  # the flagged payment's amount is the clue; which entry to reverse is the work
        for r in task.data["expect"]["require"]:
            for f, p in r["where"].items():
                v = p.get("value")
                if f == "amount" and isinstance(v, float) and v > 100:
                    assert f"{v:,.2f}" not in task.prompt and f"{v:.2f}" not in task.prompt


def test_the_folder_is_package_data():
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["envfoundry"]
    for f in FOLDER.rglob("*"):
        if f.is_file():
            rel = f.relative_to(ROOT / "src" / "envfoundry")
            assert any(Path(rel).match(pat) for pat in data), f"{rel} is not package data"


def test_a_judge_adds_the_rubric_without_connecting():
    env = load("ledger", {"judge": "openai:judge-model", "base_url": "http://127.0.0.1:9/v1"})
    assert [(n, w) for n, w, _ in env.graders] == [("declarative", 1.0), ("rubric", 0.25)]
    assert [(n, w) for n, w, _ in load("ledger", {"judge": "none"}).graders] == [("declarative", 1.0)]
