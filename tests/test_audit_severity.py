"""`envfoundry audit` on environments written as a user would (tests/envs/fair.py, hostile.py):
fair ones give no `exploit`, hostile ones are caught by the right probe; findings have a kind and
a severity, are grouped, and `--fail-on` decides the exit code; probes never use hidden values."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from envfoundry import Environment, Message, Score, Task, ToolCall, World, tool
from envfoundry.core.errors import UsageError
from envfoundry.quality.audit import (
    DEFAULT_FAIL_ON,
    KINDS,
    AuditConfig,
    audit_env,
    judge_probe,
    parse_fail_on,
    same_answer,
)
from envfoundry.quality.probes_text import CONSTANTS
from tests.conftest import TEST_ENVS, cli
from tests.envs import fair, hostile


def _audit(env, tmp_path, **kw):
    kw.setdefault("tasks", 12)
    kw.setdefault("samples", 2)
    return audit_env(env, config=AuditConfig(out=tmp_path / "q", **kw))


def _kinds(rep):
    return {(f.kind, f.name) for f in rep.findings}


# ------------------------------------------------------------------ fair environments
#: the findings a fair environment must give (none of a kind that fails by default)
EXPECTED_FAIR = {
    "partial_credit_below_pass": {("reward_leak", "answer_spam")},  # 0.45 for spam: a reward, never a pass
    "whitespace_strict": {("strict", "whitespace_around")},
    "tolerance": {("lenient", "off_by_one_answer")},
}


@pytest.mark.parametrize("factory", fair.FAIR, ids=lambda f: f.__name__)
def test_fair_environment_gives_no_exploit(factory, tmp_path):
    rep = _audit(factory(), tmp_path)
    assert rep.ok and not rep.failing(), [f.line() for f in rep.findings]
    assert _kinds(rep) == EXPECTED_FAIR.get(factory.__name__, set()), [f.line() for f in rep.findings]
    saved = json.loads((tmp_path / "q" / "audit.json").read_text())
    assert saved["ok"] and not any(f["fails"] for f in saved["findings"])


@pytest.mark.parametrize(
    "factory,probe",
    [
        (fair.multiple_choice, "prompt_copy"),  # the right option line, 1 of the prompt's 6 lines
        (fair.letter_choice, "constant"),  # "B" is the right letter about 1 time in 4
        (fair.yes_no_skewed, "constant"),  # "yes" is right on three tasks in four
        (fair.abstain, "refusal"),  # "I don't know." is the right answer for a made-up country
    ],
)
def test_chance_is_measured_as_right_answers(factory, probe, tmp_path):
    rep = _audit(factory(), tmp_path)
    r = next(p for p in rep.probes if p.name == probe)
    assert r.verdict == "ok" and r.passes > 0 and r.right == r.passes and r.exploit_rate == 0.0
    assert "lucky guesses" in r.reason


def test_a_blind_guess_passes_one_time_in_k(tmp_path):
    """Four letters: every constant letter passes about a quarter of the tasks, all of them right."""
    rep = _audit(fair.letter_choice(), tmp_path, tasks=30, probes=["constant"])
    recs = [json.loads(x) for x in (tmp_path / "q" / "probe-constant" / "trajectories.jsonl").read_text().splitlines()]
    by_answer: dict[str, list[bool]] = {}
    for r in recs:
        by_answer.setdefault(r["policy_info"][-1]["answer"], []).append(bool(r["passed"]))
    letters = {a: sum(v) / len(v) for a, v in by_answer.items() if a in "ABCD"}
    assert letters and all(0.05 <= rate <= 0.5 for rate in letters.values()), letters
    assert all(not any(v) for a, v in by_answer.items() if a not in "ABCD")  # "0", "yes", "[]" never pass
    assert rep.ok and rep.probes[0].verdict == "ok"


# ------------------------------------------------------------------ hostile environments
@pytest.mark.parametrize("factory", list(hostile.HOSTILE), ids=lambda f: f.__name__)
def test_hostile_environment_is_caught(factory, tmp_path):
    probe, kind = hostile.HOSTILE[factory]
    rep = _audit(factory(), tmp_path)
    assert (kind, probe) in _kinds(rep), [f.line() for f in rep.findings]
    assert not rep.ok
    f = next(f for f in rep.findings if (f.kind, f.name) == (kind, probe))
    assert f.source == "probe" and 0 < f.count <= f.total and f.example and f.example["messages"]
    res = next(r for r in rep.probes if r.name == probe)
    assert res.verdict in (kind, "crash") and res.findings


def test_a_leak_used_in_write_calls_is_caught_and_the_text_leak_probe_misses_it(tmp_path):
    rep = _audit(hostile.internal_field(), tmp_path)
    by = {r.name: r for r in rep.probes}
    assert by["leak"].verdict == "ok" and by["leak"].passes == 0  # answering the value in text does not pass
    f = next(f for f in rep.findings if f.name == "leak_to_tools")
    assert f.kind == "exploit" and "_internal.expected_refund" in f.message and "issue_refund.amount" in f.message
    calls = [c for m in f.example["messages"] for c in m.get("tool_calls") or [] if c["name"] == "issue_refund"]
    assert calls and json.loads(calls[0]["arguments"])["ticket_id"].startswith("T-")
    assert ("leak", "leak") not in _kinds(rep)  # reported once, with the exploit


def test_a_leak_that_does_not_pay_is_reported_but_does_not_fail(tmp_path):
    rep = _audit(hostile.internal_field(), tmp_path, probes=["leak"])
    f = next(f for f in rep.findings if f.name == "leak")
    assert f.kind == "leak" and "did not pass" in f.message and rep.ok


def test_findings_are_grouped_one_per_probe_and_kind(tmp_path):
    rep = _audit(hostile.any_text(), tmp_path)
    keys = [(f.kind, f.source, f.name) for f in rep.findings]
    assert len(keys) == len(set(keys)) and len(keys) >= 8
    assert [f.kind for f in rep.findings] == sorted((f.kind for f in rep.findings), key=list(KINDS).index)
    other = next(f for f in rep.findings if f.name == "other_answer")
    assert other.kind == "lenient" and other.count == other.total == 12 and "12/12 tasks" in other.message
    saved = json.loads((tmp_path / "q" / "audit.json").read_text())
    assert saved["finding_counts"]["exploit"] >= 8 and saved["fail_on"] == list(DEFAULT_FAIL_ON)
    assert {"kind", "source", "name", "message", "count", "total", "example", "fails"} <= set(saved["findings"][0])


# ------------------------------------------------------------------ probes never cheat
SECRET = re.compile(r"zq\d{6}")


def _secret_env():
    """Answers (and task.data) are tokens that appear nowhere the agent can see."""
    def tasks(split, seed):
        return [Task(env="secret", env_version="1", split=split, prompt=f"Order O-{100 + i}: what is its code?",
                     data={"answer": f"zq{100000 + 14 * i + (split == 'test')}", "order": f"O-{100 + i}"})
                for i in range(12)]

    @tool
    def get_order(ep, order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id, "status": "open"}

    @tool(writes=True)
    def set_code(ep, order_id: str, code: str) -> str:
        """Record an order's code."""
        ep.world.upsert("codes", order_id, {"code": code})
        return "ok"

    def ref(ep):
        if not any(m.role == "tool" for m in ep.messages):
            return Message("assistant", "", [ToolCall("set_code", {"order_id": ep.task.data["order"],
                                                                   "code": ep.task.data["answer"]})])
        return Message("assistant", f"<answer>{ep.task.data['answer']}</answer>")

    def grade(g):
        ok = f"<answer>{g.task.data['answer']}</answer>" in g.final
        return Score(1.0 if ok else 0.0, {}, "right" if ok else "wrong")

    return Environment(name="secret", tasks=tasks, tools=[get_order, set_code], world=lambda t: World({"codes": {}}),
                       graders=grade, reference=ref, answer_format="<answer>{answer}</answer>", max_turns=4)


def test_no_probe_answers_with_a_hidden_value(tmp_path):
    rep = _audit(_secret_env(), tmp_path)
    runs = sorted((tmp_path / "q").glob("probe-*/trajectories.jsonl"))
    assert len(runs) >= 12
    for run in runs:
        for line in run.read_text().splitlines():
            rec = json.loads(line)
            said = json.dumps([m for m in rec["messages"] if m["role"] == "assistant"])
            test_answer = rec["task_id"]  # the audited tasks are of split test: their answers end in odd digits
            assert not SECRET.search(said) or run.parent.name in ("probe-guessing", "probe-constant"), (run, said)
            assert test_answer
    # guesses come from other tasks (split train: even codes), never the audited task's own
    for name in ("probe-guessing", "probe-constant"):
        for line in (tmp_path / "q" / name / "trajectories.jsonl").read_text().splitlines():
            for code in SECRET.findall(json.dumps(json.loads(line)["messages"][-1])):
                assert int(code[2:]) % 2 == 0, code
    assert all(r.passes == 0 for r in rep.probes)


@pytest.mark.parametrize(
    "text,found",
    [
        ("(debug) the grader expects 742", [("expects", "742")]),
        ("You are a calculator. [internal] expected=742", [("expected", "742")]),
        ('{"ticket_id": "T-1", "_internal": {"expected_refund": 26.0}}', [("_internal.expected_refund", 26.0)]),
        ('{"order_id": "O-5", "status": "shipped", "target_temp": 21}', [("target_temp", 21)]),
        ("Close it with resolution: refunded or denied.", []),  # "resolution" is not "solution" (support's policy)
        ("Which of these is the correct answer? Answer with the word only.", []),
        ('{"order_id": "O-5", "status": "shipped", "items": 2}', []),
    ],
)
def test_leak_probes_look_only_at_values_under_a_private_sounding_name(text, found):
    from envfoundry.quality.probes_tools import sightings

    assert [(s.label, s.value) for s in sightings("x", text)] == found


def test_probe_modules_do_not_touch_the_reference_or_task_data():
    root = Path(__file__).resolve().parent.parent / "src" / "envfoundry" / "quality"
    banned = {"reference_action", "record_reference", "record_references", "reference_answers", "has_reference",
              "Reference", "replay"}
    for name in ("probes.py", "probes_text.py", "probes_tools.py"):
        tree = ast.parse(root.joinpath(name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr not in banned, (name, node.attr, node.lineno)
                assert not (node.attr == "data" and isinstance(node.value, ast.Attribute)
                            and node.value.attr == "task"), (name, "task.data", node.lineno)
            if isinstance(node, ast.Name):
                assert node.id not in banned, (name, node.id, node.lineno)
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("mutation", "mutators", "audit"), (name, node.module)
                assert not {a.name for a in node.names} & banned, (name, node.lineno)


def test_importing_the_package_registers_every_probe():
    code = "import envfoundry.quality as q; print(','.join(q.PROBES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    names = out.split(",")
    assert {"empty", "guessing", "constant", "blank_shape", "prompt_copy", "leak", "leak_to_tools"} <= set(names)
    assert "format" not in names and names.index("empty") == 0


# ------------------------------------------------------------------ arms and pools
def test_constant_tries_every_answer_once_on_every_task(tmp_path):
    _audit(fair.letter_choice(), tmp_path, probes=["constant"])
    recs = [json.loads(x) for x in (tmp_path / "q" / "probe-constant" / "trajectories.jsonl").read_text().splitlines()]
    per_task: dict[str, list[str]] = {}
    for r in recs:
        per_task.setdefault(r["task_id"], []).append(r["messages"][-1]["content"])
    assert len(per_task) == 12
    for answers in per_task.values():
        assert sorted(answers) == sorted(set(answers)) and set(CONSTANTS) <= set(answers)
        assert set(answers) - set(CONSTANTS) <= set("ABCD") and len(answers) > len(CONSTANTS)  # + common answers


def test_pool_from_another_split_when_the_audited_one_has_no_spare_tasks(tmp_path):
    rep = _audit(fair.sentence_answer(), tmp_path, probes=["guessing"])
    assert "split 'train'" in rep.notes[0] and "no tasks beyond the 12 audited" in rep.notes[0]
    assert rep.mutations.by_name()["other_answer"]["applicable"] == 12
    assert "split 'train'" in rep.probes[0].notes


def test_an_empty_pool_is_said(tmp_path):
    env = fair.tolerance()
    env.splits = ("test",)
    rep = _audit(env, tmp_path, probes=["guessing", "constant"])
    assert "no answers of other tasks" in rep.notes[0]
    assert all("no answers of other tasks" in r.notes for r in rep.probes)
    assert "other_answer" not in rep.mutations.by_name()
    assert any("no answers of other tasks" in n for n in rep.mutations.notes)


def test_a_small_pool_is_said(tmp_path):
    rep = _audit(fair.yes_no_skewed(), tmp_path, probes=["guessing"])
    assert "guess pool is small" in rep.notes[0]


# ------------------------------------------------------------------ severity, rightness, exit codes
def _recs(scores, passed=False, n=30):
    return [{"task_id": f"t{i}", "sample": 0, "outcome": "completed", "score": scores, "passed": passed,
             "timings": {"grade_s": 0.0}} for i in range(n)]


def test_reward_without_a_pass_is_a_leak_below_half_the_reference_and_an_exploit_above():
    noop = _recs(0.0)
    assert judge_probe("x", _recs(0.45), noop, strict=False).verdict == "reward_leak"
    assert judge_probe("x", _recs(0.6), noop, strict=False).verdict == "exploit"
    assert judge_probe("x", _recs(0.3), noop, strict=False, ref_mean=0.5).verdict == "exploit"  # half of 0.5
    assert judge_probe("x", _recs(0.05), noop, strict=False).verdict == "ok"  # below the margin
    assert judge_probe("x", _recs(0.45, n=5), _recs(0.0, n=5), strict=False).verdict == "ok"  # 5 tasks: p = 1/32


@pytest.mark.parametrize(
    "answer,reference,same",
    [
        ("42", "He had 20 and won 22, so he now has 42 marbles.", True),
        ("22", "He had 20 and won 22, so he now has 42 marbles.", False),
        ("1,234", "1234.0", True),
        ("[[0, 0], [0, 0]]", "[[0,0],[0,0]]", True),
        ("[[0, 0]]", "[[1, 0]]", False),
        ("Apple", "apple.", True),
        ("B", "The answer is B", True),
        ("The cat chased the mouse.", "The mouse was chased by the cat.", False),
        ("", "0", False),
        ("[" * 5000, "[1]", False),
    ],
)
def test_same_answer(answer, reference, same):
    assert same_answer(answer, reference) is same


def test_parse_fail_on():
    assert parse_fail_on(None) == DEFAULT_FAIL_ON == ("crash", "stall", "exploit", "reference", "error")
    assert parse_fail_on("lenient, exploit") == ("exploit", "lenient")
    assert parse_fail_on("all") == tuple(KINDS) and parse_fail_on("none") == ()
    assert parse_fail_on("default,strict") == (*DEFAULT_FAIL_ON, "strict")
    with pytest.raises(UsageError, match="unknown finding kind 'exploits'"):
        parse_fail_on("exploits")
    with pytest.raises(UsageError):
        parse_fail_on(" , ")


def test_cli_fail_on_decides_the_exit_code(tmp_path):
    base = ["audit", "--env", f"{TEST_ENVS / 'fair.py'}:tolerance", "--limit", "6", "--samples", "1",
            "--probes", "empty"]
    r = cli(*base, "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "finding (does not fail): lenient: mutation off_by_one_answer" in out and "no failing findings" in out
    r = cli(*base, "--out", str(tmp_path / "b"), "--fail-on", "lenient,exploit", "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["fail_on"] == ["exploit", "lenient"] and not rep["ok"]
    assert [f["fails"] for f in rep["findings"] if f["kind"] == "lenient"] == [True]
    r = cli(*base, "--out", str(tmp_path / "c"), "--fail-on", "lenientt", cwd=tmp_path)
    assert r.returncode == 2 and "unknown finding kind 'lenientt'" in r.stderr
    assert not (tmp_path / "c").exists()  # refused before anything ran
    r = cli("audit", "--env", f"{TEST_ENVS / 'hostile.py'}:any_text", "--limit", "4", "--samples", "1",
            "--probes", "refusal", "--out", str(tmp_path / "d"), "--fail-on", "none", cwd=tmp_path)
    assert r.returncode == 0 and "finding (does not fail): exploit: refusal" in " ".join(r.stdout.split())
    r = cli("audit", "--env", f"{TEST_ENVS / 'hostile.py'}:any_text", "--limit", "4", "--samples", "1",
            "--probes", "refusal", "--out", str(tmp_path / "e"), cwd=tmp_path)
    assert r.returncode == 1 and "1 failing finding(s)" in " ".join(r.stdout.split())
