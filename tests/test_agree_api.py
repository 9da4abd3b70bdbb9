"""``envfoundry.quality.agree``: the agree workflow as a library call (what the CLI prints, as a
report), its options (``AgreeConfig``), and the layering it restores: grading imports only core."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import pytest

from envfoundry.core.errors import UsageError
from envfoundry.quality import AgreeConfig, agree
from envfoundry.quality.agree import load_labels, shipped_labels
from tests.conftest import ROOT, cli

GRADING = ROOT / "src" / "envfoundry" / "grading"
#: the parts of envfoundry grading may import (everything else is above it)
BELOW = ("envfoundry.core", "envfoundry.grading")
SUPPORT_OK = "verified: yes\nconfirmed: yes\npolicy_outcome: yes\nexplained: yes\ncourteous: yes"


def _noisy_scores(annotator: str = "noisy_10") -> list[dict]:
    """One annotator's labels of the shipped support set, written as a grader's scores."""
    return [{"id": r["id"], "score": float(r["label"])} for r in load_labels(shipped_labels("support"))
            if r["annotator"] == annotator]


@pytest.fixture
def scores_file(tmp_path: Path) -> Path:
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _noisy_scores()))
    return path


# ------------------------------------------------------------------------- the entry point
def test_agree_on_the_shipped_labels_is_what_the_cli_reports(scores_file):
    rep = agree("support", scores=scores_file, boot=200, seed=3)
    assert rep.mode == "grader" and rep.reference == "ground_truth" and rep.n_items == 42
    kappa = rep.metric("cohen_kappa")
    assert 0.5 < kappa.value < 1 and kappa.lo <= kappa.value <= kappa.hi
    assert {(r["a"], r["b"]) for r in rep.raters} >= {("ground_truth", "grader"), ("noisy_25", "grader")}
    r = cli("agree", "--labels", "support", "--scores", str(scores_file), "--boot", "200", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(json.dumps(rep.to_dict()))


def test_records_in_memory_give_the_same_report_as_files(scores_file):
    labels = load_labels(shipped_labels("support"))
    from_files = agree(shipped_labels("support"), scores=scores_file, boot=100)
    in_memory = agree([{k: r[k] for k in ("id", "label", "annotator")} for r in labels], scores=_noisy_scores(),
                      boot=100)
    assert in_memory.metrics == from_files.metrics and in_memory.disagreements == from_files.disagreements


def test_a_config_and_keywords_are_one_set_of_options(scores_file):
    cfg = AgreeConfig(scores=scores_file, boot=100, seed=1)
    assert agree("support", cfg).metrics == agree("support", scores=scores_file, boot=100, seed=1).metrics
    overridden = agree("support", cfg, seed=2)  # keywords lay over the config
    assert overridden.info["seed"] == 2 and overridden.info["n_boot"] == 100
    assert cfg.seed == 1  # the config given is not changed


def test_without_a_grader_it_is_the_annotators_agreement():
    rep = agree("support", boot=50)
    assert rep.mode == "annotators" and rep.reference == "none"
    assert rep.metric("krippendorff_alpha_nominal (annotators)") is not None
    assert rep.disagreements and all(len(d["labels"]) >= 2 for d in rep.disagreements)


class _AlwaysYes:
    """A judge object that passes everything and always prefers the first transcript."""

    def __init__(self) -> None:
        self.temperature = 0.25
        self.calls = 0

    def context_for(self, g):
        return ""

    def judge_messages(self, messages, *, context="", seed=0):
        from envfoundry.grading.rubric import Verdict

        self.calls += 1
        return Verdict({"ok": True}, 1.0, True, {"ok": [True]}, ["ok: yes"], 1)

    def prefer(self, a, b, *, context="", seed=0):
        return 0


def test_a_judge_object_runs_over_the_items_with_progress():
    judge, seen = _AlwaysYes(), []
    rep = agree("support", judge=judge, repeats=2, adversarial=3, pairs=2, seed=1, boot=50,
                on_progress=lambda done, total: seen.append((done, total)))
    total = 42 * 2 + 3 * 2 + 2 * 2
    assert seen[0] == (0, total) and seen[-1] == (total, total) and len(seen) == total + 1
    assert judge.calls == 42 * 2 + 3 * 2 and judge.temperature == 0.25  # used as it is
    assert rep.metric("false_positive_rate (injection)").value == 1.0
    assert rep.metric("first_position_rate").value == 1.0


def test_a_judge_by_name_reads_transcripts_in_memory_and_saves_its_scores(tmp_path):
    from envfoundry.testing import StubServer

    items = [json.loads(x) for x in shipped_labels("support").with_name("items.jsonl").read_text().splitlines()]
    save = tmp_path / "judge.jsonl"
    srv = StubServer(reply=SUPPORT_OK)
    with srv.run_in_thread() as url:
        rep = agree("support", judge="support", model="openai:stub", base_url=url, items=items[:4], repeats=1,
                    adversarial=0, pairs=0, boot=50, save=save)
    assert srv.n_requests > 0 and rep.n_items == 4 and rep.info["judgements"] == 4
    saved = [json.loads(x) for x in save.read_text().splitlines()]
    assert [r["id"] for r in saved] == [it["id"] for it in items[:4]] and all(r["passed"] for r in saved)


@pytest.mark.parametrize("options, message", [
    ({"scores": "s.jsonl", "run": "r"}, "give at most one of --scores"),
    ({"save": "out.jsonl"}, "--save only applies with --judge"),
    ({"judge": "support"}, "--judge needs --model"),
    ({"model": "local"}, "--model only applies with --judge"),
    ({"judge": _AlwaysYes(), "temperature": 0.5}, "--temperature only applies with --judge ENV: a judge object"),
    ({"threshold": 0.5}, "--threshold only applies to a grader's scores"),
    ({"judge": "support", "model": "local", "threshold": 7.0}, "--threshold must be a number from 0 to 1"),
    ({"scale": "likert"}, "unknown scale 'likert'"),
    ({"judge": 42}, "--judge takes an environment name, package.module:factory or a judge object"),
    ({"boot": 0}, "--boot must be >= 1, got 0"),
    ({"repeats": 101, "judge": "support", "model": "local"}, "--repeats must be <= 100, got 101"),
    ({"temperature": float("inf"), "judge": "support", "model": "local"}, "--temperature: Input should be a finite"),
])
def test_options_that_cannot_go_together_are_refused_before_any_work(options, message):
    with pytest.raises(UsageError) as e:
        agree("no-such-labels-file.jsonl", **options)  # the options are checked before the labels are read
    assert message in str(e.value)


def test_unknown_options_and_bad_records_are_named():
    with pytest.raises(TypeError, match="unexpected keyword argument 'scroes'; did you mean 'scores'"):
        agree("support", scroes="s.jsonl")
    with pytest.raises(UsageError, match=r"label record 2: expected an object"):
        agree([{"id": "a", "label": 1}, "b,0"], scores=[{"id": "a", "score": 1.0}])
    with pytest.raises(UsageError, match=r"1 'score'\(s\) not a finite number.*scores record 2"):
        agree("support", scores=[{"id": "x", "score": 1.0}, {"id": "y", "score": "high"}])
    for bad in ({"id": "a", "label": 1}, 5, b"labels.jsonl"):
        with pytest.raises(UsageError, match="labels are a file, an environment's name or a list of records"):
            agree(bad)
    with pytest.raises(UsageError, match="no labels to compare with"):
        agree(iter([]))
    with pytest.raises(UsageError, match="the scores hold no records"):
        agree("support", scores=[])
    with pytest.raises(UsageError, match="items record 2: id 'a' is already in items record 1"):
        msgs = [{"role": "user", "content": "hi"}]
        agree("support", judge=_AlwaysYes(), items=[{"id": "a", "messages": msgs}, {"id": "a", "messages": msgs}])
    with pytest.raises(UsageError, match="labels given as records have no items.jsonl"):
        agree([{"id": "a", "label": 1}], judge=_AlwaysYes())


def test_save_never_replaces_the_labels_from_python(tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(shipped_labels("support").read_bytes())
    (tmp_path / "items.jsonl").write_bytes(shipped_labels("support").with_name("items.jsonl").read_bytes())
    judge = _AlwaysYes()
    with pytest.raises(UsageError, match="is the --labels file"):
        agree(labels, judge=judge, save=labels)
    assert judge.calls == 0 and labels.read_bytes() == shipped_labels("support").read_bytes()


# ------------------------------------------------------------------------- the layering
def _imports(path: Path, src: Path = ROOT / "src") -> set[str]:
    """Every module ``path`` (under ``src``) imports, anywhere in it: functions and TYPE_CHECKING
    blocks too."""
    package = list(path.relative_to(src).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out |= {target if node.module else f"{target}.{a.name}" for a in node.names}
    return out


def test_the_grading_package_imports_nothing_above_core():
    above = {}
    for path in sorted(GRADING.rglob("*.py")):
        bad = sorted(m for m in _imports(path) if m.startswith("envfoundry") and not m.startswith(BELOW))
        if bad:
            above[path.name] = bad
    assert above == {}
    assert "envfoundry.core.chat" in _imports(GRADING / "rubric.py")  # the finder sees imports at all


def test_the_import_finder_sees_an_upward_import(tmp_path):
    """_imports() can fail: relative imports into rollout and quality, inside a function, are found."""
    fake = tmp_path / "envfoundry" / "grading" / "upwards.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..rollout.run import Run\n    from .. import quality\n"
                    "    import envfoundry.cli\n    from .values import number\n")
    assert _imports(fake, tmp_path) == {"envfoundry.rollout.run", "envfoundry.quality", "envfoundry.cli",
                                        "envfoundry.grading.values"}


@pytest.mark.parametrize("old, name, new", [
    ("envfoundry.grading.agree", "compare", "envfoundry.grading.compare"),
    ("envfoundry.grading.agree", "load_labels", "envfoundry.quality.agree"),
    ("envfoundry.grading.labels", "write_jsonl", "envfoundry.quality.agree.sources"),
    ("envfoundry.grading.judge_runs", "run_judge", "envfoundry.quality.agree.judge"),
    ("envfoundry.grading.tables", "parse_label", "envfoundry.grading.values"),
])
def test_old_import_paths_still_work_and_say_where_the_name_went(old, name, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"{old}.{name} is now {new}.{name}"):
        got = getattr(importlib.import_module(old), name)
    assert got is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"), warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module(old).nothing_here  # noqa: B018


def test_a_rubric_judge_gets_its_model_client_through_core():
    from envfoundry.core.chat import chat_client, set_chat_factory
    from envfoundry.grading.rubric import Rubric, RubricGrader, RubricItem

    class Fake:
        def complete(self, messages, *, temperature=0.0, max_tokens=256, seed=0):
            return "ok: yes"

    made = []
    rubric = Rubric((RubricItem("ok", "Was it ok?"),))
    previous = set_chat_factory(lambda spec, **kw: made.append((spec, kw)) or Fake())
    try:
        judge = RubricGrader(rubric, judge="openai:any", base_url="http://127.0.0.1:9/v1")
        assert isinstance(judge.client, Fake) and made == [
            ("openai:any", {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None, "retry": None})]
        assert judge.judge_messages([{"role": "user", "content": "hi"}]).passed
        set_chat_factory(None)
        with pytest.raises(UsageError, match="no chat client factory is installed"):
            chat_client("local")
    finally:
        set_chat_factory(previous)
    from envfoundry.policies.chat import ChatClient

    assert isinstance(RubricGrader(rubric, judge="openai:x", base_url="http://127.0.0.1:9/v1").client, ChatClient)
