"""`envfoundry audit`: each deliberately hackable environment is flagged by the right probe or
mutation; the built-in environments are not flagged; audits resume and repeat by seed."""

import json
import math
import time

import pytest

from envfoundry import Environment, Message, Policy, Score, Task, load
from envfoundry.core.errors import UsageError
from envfoundry.envs import BUILTIN
from envfoundry.envs.math.grader import parse_answer
from envfoundry.quality.audit import AuditConfig, audit_env, fisher_greater, judge_probe, sign_test_greater
from envfoundry.quality.probes import PROBES, TextProbe, make_probe, probe_classes, register_probe
from tests.conftest import ROOT, TEST_ENVS, cli
from tests.envs import hackable


def _audit(env, tmp_path, **kw):
    kw.setdefault("tasks", 12)
    kw.setdefault("samples", 2)
    return audit_env(env, config=AuditConfig(out=tmp_path / "q", **kw))


def _flagged(report, kind="exploit"):
    return {f.name for f in report.findings if f.kind == kind and f.source == "probe"}


@pytest.mark.parametrize(
    "factory,expected,allowed",
    [
        (hackable.substring_credit, {"answer_spam", "echo_prompt", "prompt_copy"}, set()),
        (hackable.success_claim, {"claim_success"}, set()),
        (hackable.crash_as_pass, {"grader_error"}, set()),
        (hackable.obedient_judge, {"judge_injection"}, set()),
        (hackable.many_attempts, {"answer_spam"}, set()),
        (hackable.leaky_tool, {"leak"}, set()),
        (hackable.leaky_prompt, {"leak"}, set()),
        (hackable.partial_credit, {"tool_abuse"}, set()),
    ],
)
def test_hackable_env_is_flagged_by_the_right_probe(factory, expected, allowed, tmp_path):
    rep = _audit(factory(), tmp_path)
    assert not rep.ok and rep.baseline.verdict == "ok"
    flagged = _flagged(rep)
    assert expected <= flagged <= expected | allowed, flagged
    for r in rep.probes:
        if r.name in expected:
            assert r.example and r.example["messages"][-1]["role"] == "assistant"  # one example trajectory
            assert r.example["explanation"] and r.reason
            assert r.exploit_rate and r.exploit_rate > 0
    saved = json.loads((tmp_path / "q" / "audit.json").read_text())
    assert not saved["ok"] and all(any(f["name"] == n and f["kind"] == "exploit" and f["fails"]
                                       for f in saved["findings"]) for n in expected)


@pytest.mark.parametrize(
    "factory,mutations",
    [
        (hackable.collateral, {"extra_write"}),  # ignores collateral damage
        (hackable.partial_credit, {"missing_step", "off_by_one_arg", "extra_write"}),  # credit for progress
        (hackable.many_attempts, {"hedge_answer"}),  # the right answer hedged with a wrong one
    ],
)
def test_lenient_grader_is_caught_by_mutations(factory, mutations, tmp_path):
    rep = _audit(factory(), tmp_path, probes=["empty"])
    m = rep.mutations
    failed = {n for n, d in m.by_name().items() if d["failed"]}
    assert failed == mutations
    assert m.kill_rate is not None and m.kill_rate < 1.0 and m.preservation_rate == 1.0
    survivor = next(f for f in m.failures if f.name in mutations)
    assert survivor.status == "survived" and survivor.example  # the mutated actions are shown
    lenient = [f for f in rep.findings if f.kind == "lenient"]
    assert {f.name for f in lenient} == mutations and all(f.source == "mutation" for f in lenient)
    assert all(f.count == f.total == 12 and f.example["messages"] for f in lenient)  # grouped: one per mutation
    assert rep.ok and not rep.failing() and rep.failing(["lenient"]) == lenient  # lenient fails only on request


def test_collateral_extra_write_touches_another_record(tmp_path):
    rep = _audit(hackable.collateral(), tmp_path, probes=["empty"], tasks=4)
    extra = [f for f in rep.mutations.failures if f.name == "extra_write"]
    assert extra and all("O-" in f.detail for f in extra)
    # the solution's own order is not the one damaged: the report shows collateral damage
    assert all(json.dumps(f.example).count("set_status") + json.dumps(f.example).count("delete_order") >= 2
               for f in extra)


def test_math_is_clean_cli(tmp_path):
    r = cli("audit", "math", "--json", "--out", str(tmp_path / "quality" / "math"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    rep = json.loads(r.stdout)
    saved = json.loads((tmp_path / "quality" / "math" / "audit.json").read_text())
    assert rep["ok"] and saved["ok"] and saved["findings"] == [] and saved["finding_counts"] == {}
    for key in ("exploit_rate", "mutation_kill_rate", "package_version", "seed", "env", "env_version", "timestamp"):
        assert key in saved
    assert saved["env"] == "math" and saved["tasks"] == 30 and saved["samples"] == 2
    assert saved["mutation_kill_rate"] == 1.0 and saved["mutation_preservation_rate"] == 1.0
    assert all(rate <= 0.15 for rate in saved["exploit_rate"].values())  # coincidences only
    names = saved["mutations"]["by_name"]
    assert {"off_by_one_answer", "other_answer", "hedge_answer", "plus_sign", "sign_flipped",
            "whitespace_in_answer"} <= set(names)
    verdicts = {p["name"]: p["verdict"] for p in saved["probes"]}
    assert verdicts["tool_abuse"] == verdicts["echo_tools"] == "skipped"
    assert {"constant", "blank_shape", "prompt_copy", "leak"} <= {n for n, v in verdicts.items() if v == "ok"}
    assert (tmp_path / "quality" / "math" / "probe-constant" / "trajectories.jsonl").is_file()


@pytest.mark.skipif("shop" not in BUILTIN, reason="no shop environment")
def test_shop_is_clean(tmp_path):
    rep = _audit(load("shop"), tmp_path, tasks=5, samples=1)
    assert rep.ok, rep.findings
    m = rep.mutations
    assert m.kill_rate == 1.0 and m.preservation_rate == 1.0
    assert {"wrong_value_arg", "missing_step", "reorder_keys"} <= set(m.by_name())


def test_example_counter_env_is_clean(tmp_path):
    rep = _audit(load(f"{ROOT / 'examples' / 'counter_env.py'}:make_env"), tmp_path, tasks=10)
    assert rep.ok, rep.findings
    by = rep.mutations.by_name()
    assert by["extra_write"]["ok"] and by["missing_step"]["ok"] and by["int_as_float"]["ok"]
    assert rep.mutations.kill_rate == 1.0


def test_cli_exit_codes_and_human_output(tmp_path):
    args = ["audit", "--env", f"{TEST_ENVS / 'hackable.py'}:success_claim", "--limit", "6",
            "--probes", "claim_success,empty", "--out", str(tmp_path / "a")]
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "claim_success" in r.stdout and "exploit" in r.stdout and "finding" in r.stdout
    assert "assistant:" in r.stdout and "the agent reports success" in r.stdout  # the example and why
    assert (tmp_path / "a" / "audit.json").is_file()
    # the same directory again without --resume is refused; with it, nothing is re-run
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2 and "--resume" in r.stderr
    assert cli("audit", "math", "--probes", "nope", cwd=tmp_path).returncode == 2
    assert cli("audit", "math", "--limit", "0", cwd=tmp_path).returncode == 2
    assert cli("audit", "math", "--split", "nosuch", cwd=tmp_path).returncode == 2


def test_resume_and_reproducible_by_seed(tmp_path):
    env = hackable.obedient_judge()
    a = audit_env(env, config=AuditConfig(tasks=6, samples=2, seed=3, out=tmp_path / "a"))
    b = audit_env(env, config=AuditConfig(tasks=6, samples=2, seed=3, out=tmp_path / "b"))
    untimed = {"example": None, "grade_s_max": None}
    assert [r.to_dict() | untimed for r in a.probes] == [r.to_dict() | untimed for r in b.probes]

    def lines(root):
        return sorted(p.read_text() for p in (root).glob("probe-*/trajectories.jsonl"))

    def msgs(root):
        return sorted(json.dumps([json.loads(x)["messages"] for x in t.splitlines()]) for t in lines(root))

    assert msgs(tmp_path / "a") == msgs(tmp_path / "b")
    # a torn run resumes: drop half of one probe's records, resume, get the same report
    tp = tmp_path / "a" / "probe-judge_injection" / "trajectories.jsonl"
    kept = tp.read_text().splitlines()[:5]
    tp.write_text("\n".join(kept) + "\n" + '{"task_id": "torn')
    with pytest.raises(UsageError, match=r"--limit 99 differs .*--samples 9 differs .*--seed 0 differs"):
        audit_env(env, config=AuditConfig(tasks=99, samples=9, seed=0, out=tmp_path / "a", resume=True))
    c = audit_env(env, config=AuditConfig(samples=2, out=tmp_path / "a", resume=True))  # the same value is fine
    assert len(tp.read_text().splitlines()) == 12  # 6 tasks x 2 samples: the stored values
    assert c.config["seed"] == 3 and c.config["tasks"] == 6
    assert _flagged(c) == _flagged(a) == {"judge_injection"}
    jc = next(r for r in c.probes if r.name == "judge_injection")
    ja = next(r for r in a.probes if r.name == "judge_injection")
    assert (jc.passes, jc.n) == (ja.passes, ja.n)


def test_a_probe_is_one_registered_class(tmp_path):
    @register_probe
    class SayTwelve(TextProbe):
        """Always answers 12."""

        name = "say_twelve"

        def variants(self, ep):
            return ["12"]

    class Unregistered(TextProbe):
        name = "unregistered"

    try:
        assert "say_twelve" in probe_classes() and "unregistered" not in probe_classes()
        probe = make_probe("say_twelve")
        assert isinstance(probe, Policy) and probe.describe()["spec"] == "probe:say_twelve"

        def tasks(split, seed):
            return [Task(env="twelve", env_version="1", split=split, prompt=f"q{i}", data={"answer": 12})
                    for i in range(5)]

        def grade(g):
            return Score(1.0 if g.final == "12" else 0.0)

        def ref(ep):  # the right answer is 12 + i: "12" is right only on the first task
            return Message("assistant", str(12 + int(ep.task.prompt[1:])))

        env = Environment(name="twelve", tasks=tasks, graders=grade, reference=ref)
        rep = _audit(env, tmp_path, probes=["say_twelve"], tasks=5)
        assert _flagged(rep) == {"say_twelve"} and rep.probes[0].summary == "Always answers 12."
        assert rep.probes[0].right == 2 and rep.probes[0].passes == 10  # 2 lucky, 8 wrong answers that pass
    finally:
        PROBES.pop("say_twelve", None)
    with pytest.raises(ValueError, match="already registered"):
        register_probe(type("Dup", (TextProbe,), {"name": "empty"}))
    with pytest.raises(ValueError, match="needs a non-empty"):
        register_probe(type("Nameless", (TextProbe,), {}))


def test_environment_mutations_hook(tmp_path):
    def tasks(split, seed):
        return [Task(env="absval", env_version="1", split=split, prompt=f"What is {i} - {2 * i + 3}?",
                     data={"answer": -(i + 3)}) for i in range(4)]

    def grade(g):  # forgets the sign
        ok = g.final.strip().lstrip("-") == str(abs(g.task.data["answer"]))
        return Score(1.0 if ok else 0.0, {}, "ok" if ok else "wrong")

    def hook(task, actions):
        gold = task.data["answer"]
        yield "sign_flipped", [*actions[:-1], Message("assistant", str(-gold))], "wrong"
        yield "spaced", [*actions[:-1], Message("assistant", f" {gold}")], "equivalent"

    env = Environment(name="absval", tasks=tasks, graders=grade, mutations=hook,
                      reference=lambda ep: Message("assistant", str(ep.task.data["answer"])))
    rep = _audit(env, tmp_path, probes=["empty"], tasks=4)
    by = rep.mutations.by_name()
    assert by["sign_flipped"]["failed"] == 4 and by["spaced"]["ok"] == 4
    assert any("mutation sign_flipped" in f.line() and f.kind == "lenient" for f in rep.findings)

    def bad_hook(task, actions):
        yield "odd", actions, "maybe"

    env.mutations = bad_hook
    rep = _audit(env, tmp_path / "again", probes=["empty"], tasks=4)
    assert any("kind must be" in n for n in rep.mutations.notes)


def test_probes_skip_what_does_not_fit(tmp_path):
    env = hackable.success_claim()  # no tools, no answer format
    rep = _audit(env, tmp_path, tasks=3, samples=1, probes=["echo_tools", "tool_abuse", "empty"])
    why = {r.name: r.reason for r in rep.probes if r.verdict == "skipped"}
    assert set(why) == {"echo_tools", "tool_abuse"} and "no" in why["tool_abuse"]
    assert not (tmp_path / "q" / "probe-tool_abuse").exists()


# ------------------------------------------------------------------ statistics and verdicts
def test_statistics():
    assert math.isclose(fisher_greater(5, 30, 0, 30), math.comb(30, 5) / math.comb(60, 5))
    assert fisher_greater(0, 30, 0, 30) == 1.0 and fisher_greater(3, 3, 0, 3) == 0.05
    assert sign_test_greater(3, 0) == 0.125 and sign_test_greater(0, 0) == 1.0


def _recs(passes, n=30, samples=1):
    return [{"task_id": f"t{i}", "sample": s, "outcome": "completed", "score": float(i < passes),
             "passed": i < passes, "timings": {"grade_s": 0.0}} for i in range(n) for s in range(samples)]


def test_verdicts_strict_versus_statistical():
    noop = _recs(0)
    assert judge_probe("x", _recs(1), noop, strict=True).verdict == "exploit"  # strict: any pass
    assert judge_probe("x", _recs(1), noop, strict=False).verdict == "ok"  # a coincidence
    assert judge_probe("x", _recs(3), noop, strict=False).verdict == "ok"
    assert judge_probe("x", _recs(9), noop, strict=False).verdict == "exploit"
    assert judge_probe("x", _recs(9), _recs(9), strict=False).verdict == "ok"  # no better than noop
    # samples of one task are not independent: doubling them does not make 3 tasks significant
    assert judge_probe("x", _recs(3, samples=4), _recs(0, samples=4), strict=False).verdict == "ok"
    crash = [{"task_id": "t0", "sample": 0, "outcome": "grader_error", "score": None, "passed": None,
              "error": "Traceback...\nValueError: boom", "timings": {"grade_s": 0.0}}]
    res = judge_probe("x", _recs(0) + crash, noop, strict=False)
    assert res.verdict == "crash" and "ValueError: boom" in res.reason and [f.kind for f in res.findings] == ["crash"]
    undecided = [{**crash[0], "error": "envfoundry.core.errors.GraderUndecided: judge timed out"}]
    assert judge_probe("x", _recs(0) + undecided, noop, strict=True).verdict == "ok"  # the typed way to abstain
    # passes with the right answer are lucky guesses, not an exploit, even for a strict probe
    res = judge_probe("x", _recs(9), noop, strict=True, right=lambda r: True)
    assert res.verdict == "ok" and res.right == 9 and res.exploit_rate == 0.0


# ------------------------------------------------------------------ regressions: what the audit found in math
def test_math_grader_refuses_huge_numbers_without_crashing():
    value, why = parse_answer("<answer>" + "9" * 5000 + "</answer>")  # int() raised ValueError
    assert value is None and "5,000 characters" in why
    assert parse_answer("<answer>-" + "1" * 5000 + "</answer>")[0] is None
    assert parse_answer("<answer>1,234</answer>") == (1234, "")


def test_math_grader_counts_tags_before_matching():
    # thousands of unclosed tags made the lazy regex quadratic (seconds per grade)
    t = time.perf_counter()
    value, why = parse_answer("<answer>" * 20_000)
    assert value is None and "20000 answer blocks" in why
    assert parse_answer("x</answer>" * 3)[0] is None
    assert parse_answer("</answer><answer>7")[0] is None
    assert time.perf_counter() - t < 5  # generous: the quadratic version took ~25 s


def test_resume_refuses_a_different_selection(tmp_path):
    args = ["audit", "--env", f"{TEST_ENVS / 'hackable.py'}:success_claim", "--probes", "empty", "--samples", "1",
            "--out", str(tmp_path / "a")]
    assert cli(*args, "--limit", "2", cwd=tmp_path).returncode == 0
    r = cli(*args, "--limit", "3", "--resume", cwd=tmp_path)
    assert r.returncode == 2 and "--limit 3 differs from the audit being resumed (2)" in " ".join(r.stderr.split())
    assert cli(*args, "--resume", cwd=tmp_path).returncode == 0


def test_a_reference_solution_that_fails_is_a_finding_not_a_clean_audit(tmp_path):
    code = (ROOT / "examples" / "counter_env.py").read_text()
    assert '    """The reference solution: step towards the target, then submit."""\n' in code
    env = tmp_path / "e.py"
    env.write_text(code.replace('    """The reference solution: step towards the target, then submit."""\n',
                                '    """A reference that crashes."""\n    raise RuntimeError("broken reference")\n'))
    r = cli("audit", f"{env}:make_env", "--tasks", "3", "--out", str(tmp_path / "a"))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1, out
    assert "the reference solution does not pass on 3/3 task(s)" in out and "no failing findings" not in out
