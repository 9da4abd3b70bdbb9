"""Agreement metrics equal scikit-learn / scipy / krippendorff to 1e-9; the agree report and CLI."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from envfoundry.grading import agreement as A
from envfoundry.grading.compare import compare
from envfoundry.quality.agree import load_labels, run_judge, shipped_labels
from tests.conftest import cli

TOL = 1e-9


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL


@st.composite
def label_pairs(draw, max_classes: int = 5):
    n = draw(st.integers(2, 60))
    k = draw(st.integers(2, max_classes))
    a = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    agree = draw(st.floats(0, 1))
    noise = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    flips = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    b = [x if f < agree else y for x, y, f in zip(a, noise, flips, strict=True)]
    return np.array(a), np.array(b)


@seed(20240601)
@settings(max_examples=150, deadline=None)
@given(label_pairs())
def test_classification_metrics_equal_sklearn(pair):
    a, b = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w in (None, "linear", "quadratic"):
            assert _same(A.cohen_kappa(a, b, weights=w), skm.cohen_kappa_score(a, b, weights=w))
        p, r, _, s = skm.precision_recall_fscore_support(a, b, zero_division=0)
        assert (A.confusion_matrix(a, b) == skm.confusion_matrix(a, b)).all()
    assert _same(A.accuracy(a, b), skm.accuracy_score(a, b))
    pr = A.precision_recall(a, b)
    for i, lab in enumerate(A.unique_labels(a, b)):
        assert _same(pr[lab]["precision"], p[i]) and _same(pr[lab]["recall"], r[i]) and pr[lab]["support"] == s[i]


def test_kappa_on_string_labels_and_explicit_label_order():
    y1 = ["neg", "pos", "neg", "neu", "pos"]
    y2 = ["neg", "pos", "neg", "neu", "neg"]
    assert _same(A.cohen_kappa(y1, y2), skm.cohen_kappa_score(y1, y2))
    order = ["neg", "neu", "pos"]
    assert _same(A.cohen_kappa(y1, y2, weights="quadratic", labels=order),
                 skm.cohen_kappa_score(y1, y2, weights="quadratic", labels=order))


@seed(7)
@settings(max_examples=150, deadline=None)
@given(st.integers(2, 80), st.integers(0, 2), st.floats(-1, 1), st.integers(0, 2**31 - 1))
def test_correlations_equal_scipy(n, decimals, rho, s):
    rng = np.random.default_rng(s)
    x = rng.normal(size=n).round(decimals)
    y = (rho * x + rng.normal(size=n)).round(decimals)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _same(A.spearman(x, y), float(scipy.stats.spearmanr(x, y).statistic))
        assert _same(A.kendall_tau(x, y), float(scipy.stats.kendalltau(x, y).statistic))
        assert _same(A.pearson(x, y), float(scipy.stats.pearsonr(x, y).statistic) if n > 2 else A.pearson(x, y))


def test_kendall_handles_more_than_one_block_and_ties():
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 7, 1300), rng.integers(0, 5, 1300)
    assert _same(A.kendall_tau(x, y), float(scipy.stats.kendalltau(x, y).statistic))


@seed(11)
@settings(max_examples=120, deadline=None)
@given(st.integers(2, 5), st.integers(2, 30), st.integers(2, 6), st.floats(0, 0.5), st.integers(0, 2**31 - 1),
       st.sampled_from(["nominal", "ordinal", "interval"]))
def test_alpha_equals_krippendorff_package(coders, units, values, missing, s, level):
    rng = np.random.default_rng(s)
    data = rng.integers(1, values + 1, size=(coders, units)).astype(float)
    data[rng.random(data.shape) < missing] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
        except ValueError:  # fewer than two values, or no unit with two coders
            want = float("nan")
        want = float("nan") if not np.isfinite(want) else want
        assert _same(A.krippendorff_alpha(data, level=level), want)


def test_alpha_with_value_domain_and_textbook_example():
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
            [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan]]
    for level in ("nominal", "ordinal", "interval"):
        assert _same(A.krippendorff_alpha(data, level=level, value_domain=[1, 2, 3, 4, 5, 6]),
                     float(krippendorff.alpha(data, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5, 6])))
    assert round(A.krippendorff_alpha(data, level="ordinal"), 3) == 0.815


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    b = np.where(rng.random(200) < 0.8, a, 1 - a)
    ci1 = A.bootstrap_ci(A.accuracy, a, b, n_boot=500, seed=5)
    ci2 = A.bootstrap_ci(A.accuracy, a, b, n_boot=500, seed=5)
    assert ci1 == ci2 and ci1[0] < A.accuracy(a, b) < ci1[1]
    assert A.bootstrap_ci(A.accuracy, a, b, n_boot=500, seed=6) != ci1


def test_self_consistency_and_position_swap():
    assert A.self_consistency([[1, 1, 1], [1, 0, 1], [0, None]]) == pytest.approx((1 + 1 / 3) / 2)
    assert A.position_swap_consistency([0, 0, 1, 1], [1, 0, 0, 1]) == 0.5


def _labels(truth, annotator="gold"):
    return [{"id": str(i), "label": v, "annotator": annotator} for i, v in enumerate(truth)]


def test_report_warns_when_accuracy_is_high_but_kappa_low():
    truth = [1] * 38 + [0] * 2
    scores = [{"id": str(i), "passed": True, "score": 1.0} for i in range(40)]
    rep = compare(_labels(truth), scores, n_boot=200)
    assert rep.metric("accuracy").value == 0.95 and rep.metric("cohen_kappa").value == 0.0
    assert any("overstates" in w for w in rep.warnings)


def test_report_with_repeats_rubric_probes_pairs_and_annotators():
    truth = [1, 0] * 20
    labels = _labels(truth, "ground_truth") + _labels([1 - v if i % 7 == 0 else v for i, v in enumerate(truth)],
                                                      "noisy")
    for r in labels[:40]:
        r["rubric"] = {"verified": bool(r["label"])}
    scores = []
    for i, v in enumerate(truth):
        for rep in range(3):
            guess = v if (i + rep) % 5 else 1 - v
            scores.append({"id": str(i), "repeat": rep, "score": float(guess), "passed": bool(guess),
                           "rubric": {"verified": bool(guess)}})
    scores += [{"kind": "adversarial", "id": "1", "probe": "injection", "passed": True},
               {"kind": "adversarial", "id": "3", "probe": "injection", "passed": False},
               {"kind": "pair", "pair": "0|1", "better": "0", "order": "ab", "choice": 0},
               {"kind": "pair", "pair": "0|1", "better": "0", "order": "ba", "choice": 1},
               {"kind": "pair", "pair": "2|3", "better": "2", "order": "ab", "choice": 0},
               {"kind": "pair", "pair": "2|3", "better": "2", "order": "ba", "choice": 0},
               {"id": "5", "error": "judge timed out"}]
    rep = compare(labels, scores, n_boot=200)
    names = {m.name for m in rep.metrics}
    assert rep.reference == "ground_truth" and rep.n_items == 40
    assert {"accuracy", "cohen_kappa", "krippendorff_alpha_nominal", "spearman", "kendall_tau_b",
            "self_consistency", "false_positive_rate (injection)", "position_swap_consistency",
            "krippendorff_alpha_nominal (annotators)", "krippendorff_alpha_nominal (annotators+grader)"} <= names
    assert rep.metric("false_positive_rate (injection)").value == 0.5
    assert rep.metric("position_swap_consistency").value == 0.5
    assert rep.metric("pairwise_accuracy").value == 0.75
    assert 0 < rep.metric("self_consistency").value < 1
    assert rep.per_rubric and rep.per_rubric[0]["item"] == "verified"
    assert {(r["a"], r["b"]) for r in rep.raters} == {("ground_truth", "noisy"), ("ground_truth", "grader"),
                                                      ("noisy", "grader")}
    assert rep.info["judge_errors"] == 1 and any("failed" in w for w in rep.warnings)
    for m in rep.metrics:
        assert math.isnan(m.value) or m.lo <= m.value + 1e-12 and m.value <= m.hi + 1e-12 or m.name.startswith("self")


def test_ordinal_report_has_weighted_kappas():
    truth = [1, 2, 3, 4, 5] * 8
    scores = [{"id": str(i), "score": float(min(5, v + (i % 3 == 0)))} for i, v in enumerate(truth)]
    rep = compare(_labels(truth), scores, n_boot=100)
    assert rep.scale == "ordinal"
    lin = rep.metric("cohen_kappa_linear").value
    g = [min(5, v + (i % 3 == 0)) for i, v in enumerate(truth)]
    assert _same(lin, skm.cohen_kappa_score(truth, g, weights="linear"))
    assert rep.metric("krippendorff_alpha_ordinal") is not None


class _AlwaysYes:
    """A judge that passes everything (so every adversarial probe fools it)."""

    context = ""

    def context_for(self, g):
        return ""

    def judge_messages(self, messages, *, context="", seed=0):
        from envfoundry.grading.rubric import Verdict

        return Verdict({"ok": True}, 1.0, True, {"ok": [True]}, ["ok: yes"], 1)

    def prefer(self, a, b, *, context="", seed=0):
        return 0  # always the first position


def test_run_judge_probes_and_pairs_on_the_shipped_items():
    path = shipped_labels("support")
    labels = load_labels(path)
    items = [json.loads(x) for x in path.with_name("items.jsonl").read_text().splitlines()]
    ref = {r["id"]: r["label"] for r in labels if r["annotator"] == "ground_truth"}
    recs = run_judge(_AlwaysYes(), items, reference=ref, repeats=2, adversarial=3, pairs=2, seed=1)
    rep = compare(labels, recs, n_boot=100)
    assert rep.metric("false_positive_rate (injection)").value == 1.0
    assert rep.metric("position_swap_consistency").value == 0.0  # pure position bias
    assert rep.metric("first_position_rate").value == 1.0
    assert rep.metric("self_consistency").value == 1.0
    assert rep.metric("accuracy").value == pytest.approx(sum(ref.values()) / len(ref))


def test_shipped_labels_have_two_annotators_and_documented_noise():
    labels = load_labels(shipped_labels("support"))
    by = {}
    for r in labels:
        by.setdefault(r["annotator"], {})[r["id"]] = r["label"]
    assert set(by) == {"ground_truth", "noisy_10", "noisy_25"} and len(by["ground_truth"]) >= 40
    flips = {a: sum(by[a][i] != by["ground_truth"][i] for i in by["ground_truth"]) for a in ("noisy_10", "noisy_25")}
    assert 0 < flips["noisy_10"] <= flips["noisy_25"]


def test_agree_cli_scores_and_usage(tmp_path: Path):
    labels = load_labels(shipped_labels("support"))
    scores = tmp_path / "s.jsonl"
    scores.write_text("".join(json.dumps({"id": r["id"], "score": float(r["label"])}) + "\n"
                              for r in labels if r["annotator"] == "noisy_10"))
    r = cli("agree", "--labels", "support", "--scores", str(scores), "--boot", "200")
    assert r.returncode == 0, r.stderr
    assert "cohen_kappa" in r.stdout and "95% CI" in r.stdout and "noisy_25" in r.stdout
    r = cli("agree", "--labels", "support", "--scores", str(scores), "--json", "--boot", "100")
    rep = json.loads(r.stdout)
    assert rep["reference"] == "ground_truth" and rep["n_items"] == len({x["id"] for x in labels})
    r = cli("agree", "--labels", "support", "--scores", str(scores), "--run", str(tmp_path))
    assert r.returncode == 2 and "give at most one of --scores" in r.stderr
    assert cli("agree", "--labels", str(tmp_path / "nope.jsonl"), "--scores", str(scores)).returncode == 2


def test_report_json_keeps_text_and_turns_nan_into_null():
    from envfoundry.grading.agreement_report import json_safe as _json_safe

    data = {"kappa": float("nan"), "note": "NaN labels dropped", "ci": (np.float64(0.5), float("inf")), 3: "k"}
    assert json.loads(json.dumps(_json_safe(data), allow_nan=False)) == {
        "kappa": None, "note": "NaN labels dropped", "ci": [0.5, None], "3": "k"}


@pytest.mark.parametrize("labels, scores, extra, message", [
    ('{"id": "a", "label": 1}\n{"id": "b", "label": "bad"}\n', '{"id": "a", "score": 1}\n', [],
     "the labels mix numbers and text: 1 are numbers (1) and 1 label(s) are text: \"bad\" (LABELS:2)"),
    ('{"id": "a", "label": [1]}\n', '{"id": "a", "score": 1}\n', [],
     "1 label(s) not a number, true/false or text: [1] (LABELS:1)"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": "high"}\n', [],
     "1 'score'(s) not a finite number; a text verdict goes in 'label': \"high\" (SCORES:1)"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "passed": "yes"}\n', [],
     "1 'passed' value(s) not true or false: \"yes\" (SCORES:1)"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--scale", "bogus"], "unknown scale 'bogus'"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--boot", "-1"], "--boot must be >= 1"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--threshold", "nan"],
     "--threshold must be a finite number, got nan"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--boot", "100000000"], "--boot must be <= 100,000"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--repeats", "1000000"], "--repeats must be <= 100"),
    ('{"id": "a", "label": 1, "annotator": ["x"]}\n', '{"id": "a", "score": 1}\n', [],
     "1 row(s) whose annotator 'annotator' is not a name: [\"x\"] (LABELS:1)"),
    ('{"id": "a", "label": 1}\n{"id": "b", "label": 1, "rubric": 5}\n', '{"id": "a", "score": 1}\n', [],
     "l.jsonl:2: 'rubric' must be an object of true/false answers"),
    ('{"id": "a", "label": 1}\n', '\n{"id": "a", "score": null}\n', [],
     "1 score record(s) with no 'score', 'label' or 'passed' (or 'error'): SCORES:2"),
    ('{"id": "a", "label": 1}\n', '{"id": ["a"], "score": 1}\n', [], "'id' must be text or a whole number"),
    ('{"id": "a", "label": 1}\n', '{"kind": "weird", "id": "a"}\n', [],
     "1 record(s) of unknown 'kind' (known: item, adversarial, pair): \"weird\" (SCORES:1)"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n{"kind": "pair", "pair": "a|b", "order": "ab"}\n',
     [], "1 pair record(s) whose 'choice' is not 0 or 1: null (SCORES:2)"),
    ('{"id": "a", "label": 1}\n', '', [], "is empty"),
    ('{"id": "a", "label": null}\n', '{"id": "a", "score": 1}\n', [], "no labels"),
])
def test_agree_rejects_bad_values_with_exit_2(tmp_path, labels, scores, extra, message):
    from tests.conftest import cli

    (tmp_path / "l.jsonl").write_text(labels)
    (tmp_path / "s.jsonl").write_text(scores)
    r = cli("agree", "--labels", str(tmp_path / "l.jsonl"), "--scores", str(tmp_path / "s.jsonl"), *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    message = message.replace("LABELS", str(tmp_path / "l.jsonl")).replace("SCORES", str(tmp_path / "s.jsonl"))
    assert message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr


def test_null_labels_are_missing_not_errors(tmp_path):
    from envfoundry.grading.compare import compare
    from envfoundry.quality.agree import load_labels

    (tmp_path / "l.jsonl").write_text('{"id": "a", "label": null, "annotator": "x"}\n'
                                      '{"id": "a", "label": 1, "annotator": "y"}\n'
                                      '{"id": "b", "label": 0, "annotator": "y"}\n')
    labels = load_labels(tmp_path / "l.jsonl")
    assert [(r["annotator"], r["label"]) for r in labels] == [("x", None), ("y", 1), ("y", 0)]
    rep = compare(labels, [{"id": "a", "score": 1.0}, {"id": "b", "score": 0.0}], n_boot=50)
    assert rep.n_items == 2 and rep.info["missing_labels"] == 1 and rep.info["annotators"] == ["y"]
    assert "1 missing label(s) (empty or null) left out" in rep.notes


SUPPORT_OK = "verified: yes\nconfirmed: yes\npolicy_outcome: yes\nexplained: yes\ncourteous: yes"


def _judge_args(url: str, *extra: str) -> list[str]:
    return ["agree", "--judge", "support", "--model", "openai:stub", "--base-url", url, *extra]


def _support_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the support labels and transcripts (so that a bug cannot damage the shipped ones)."""
    src = shipped_labels("support")
    labels, items = tmp_path / "labels.jsonl", tmp_path / "items.jsonl"
    labels.write_bytes(src.read_bytes())
    items.write_bytes(src.with_name("items.jsonl").read_bytes())
    return labels, items


@pytest.mark.parametrize("target", ["labels", "items", "link"])
def test_agree_save_never_replaces_an_input(tmp_path, target):
    from envfoundry.testing import StubServer

    labels, items = _support_copy(tmp_path)
    (tmp_path / "link.jsonl").symlink_to(labels)
    save = tmp_path / f"{target}.jsonl"
    before = {p: p.read_bytes() for p in (labels, items)}
    srv = StubServer(reply=SUPPORT_OK)
    with srv.run_in_thread() as url:
        r = cli(*_judge_args(url, "--labels", str(labels), "--items", str(items), "--limit", "2", "--repeats", "1",
                             "--save", str(save)))
    assert r.returncode == 2, r.stdout + r.stderr
    which = "items" if target == "items" else "labels"
    assert f"is the --{which} file" in r.stderr and "Traceback" not in r.stderr
    assert srv.n_requests == 0  # refused before any judging
    assert {p: p.read_bytes() for p in (labels, items)} == before


def test_agree_save_checks_its_path_before_judging(tmp_path):
    from envfoundry.testing import StubServer

    labels, items = _support_copy(tmp_path)
    (tmp_path / "dir").mkdir()
    srv = StubServer(reply=SUPPORT_OK)
    with srv.run_in_thread() as url:
        base = _judge_args(url, "--labels", str(labels), "--items", str(items), "--limit", "2")
        r = cli(*base, "--save", str(tmp_path / "dir"))
        assert r.returncode == 2 and "is a directory" in r.stderr and "Traceback" not in r.stderr
        r = cli(*base, "--save", str(tmp_path / "nope" / "s.jsonl"))
        assert r.returncode == 2 and "does not exist" in r.stderr
    assert srv.n_requests == 0
    r = cli("agree", "--labels", str(labels), "--scores", str(labels), "--save", str(tmp_path / "s.jsonl"))
    assert r.returncode == 2 and "--save only applies with --judge" in r.stderr
    assert list((tmp_path / "dir").iterdir()) == []


def test_agree_save_writes_the_scores_whole(tmp_path):
    from envfoundry.quality.agree import write_jsonl
    from envfoundry.testing import StubServer

    labels, items = _support_copy(tmp_path)
    save = tmp_path / "scores.jsonl"
    save.write_text("old\n")
    with StubServer(reply=SUPPORT_OK).run_in_thread() as url:
        r = cli(*_judge_args(url, "--labels", str(labels), "--items", str(items), "--limit", "3", "--repeats", "2",
                             "--adversarial", "0", "--pairs", "0", "--boot", "50", "--save", str(save)))
    assert r.returncode == 0, r.stdout + r.stderr
    recs = [json.loads(x) for x in save.read_text().splitlines()]
    assert len(recs) == 6 and all(x["passed"] is True for x in recs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "labels.jsonl", "scores.jsonl"]
    with pytest.raises(TypeError):  # a record that cannot be written: the old file stays, no temporary file
        write_jsonl(save, [{"id": "a"}, {"id": object()}])
    assert len(save.read_text().splitlines()) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "labels.jsonl", "scores.jsonl"]


@pytest.mark.parametrize("content, message", [
    (b'{"id": "x", "messages": "notalist"}\n', "items.jsonl:1: 'messages' must be a non-empty list"),
    (b'{"id": "x", "messages": []}\n', "items.jsonl:1: 'messages' must be a non-empty list"),
    (b'\n{"id": "x", "messages": [{"role": "alien", "content": 5}]}\n',
     "items.jsonl:2: message 1: 'role' must be one of system, user, assistant, tool, got \"alien\""),
    (b'{"id": "x", "messages": [{"role": "user", "content": 5}]}\n', "items.jsonl:1: message 1: 'content' must be"),
    (b'{"id": "x", "messages": [{"role": "assistant", "tool_calls": [3]}]}\n', "'tool_calls' must be a list"),
    (b'{"id": "x", "messages": [7]}\n', "items.jsonl:1: message 1: a message is an object"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}\n', "items.jsonl:1: needs 'id'"),
    (b'{"id": "x", "messages": [{"role": "user", "content": "hi"}]}\n' * 2, "items.jsonl:2: id 'x' is already on"),
    (b'{"id": "x", "messages": [{"role": "user", "content": "hi"}]}\n\xff\xfe\x00', "items.jsonl:2: not UTF-8"),
    (b'', "holds no transcripts"),
])
def test_agree_rejects_bad_items_before_judging(tmp_path, content, message):
    from envfoundry.testing import unused_port

    labels, items = _support_copy(tmp_path)
    items.write_bytes(content)
    r = cli(*_judge_args(f"http://127.0.0.1:{unused_port()}/v1", "--labels", str(labels), "--items", str(items)))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr


@pytest.mark.parametrize("which", ["labels", "scores"])
def test_agree_rejects_files_that_are_not_utf8_or_are_directories(tmp_path, which):
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "label": 1}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "a", "label": 1}\n\xff\xfe\x00\n')
    args = {"labels": str(good), "scores": str(good), which: str(bad)}
    r = cli("agree", "--labels", args["labels"], "--scores", args["scores"])
    assert r.returncode == 2 and "bad.jsonl:2: not UTF-8 text (byte 0xff)" in r.stderr and "Traceback" not in r.stderr
    args[which] = str(tmp_path)
    r = cli("agree", "--labels", args["labels"], "--scores", args["scores"])
    assert r.returncode == 2 and f"{which} file {str(tmp_path)!r} is a directory" in r.stderr, r.stderr
    assert "does not exist" not in r.stderr


def test_agree_exits_1_when_every_judgement_fails(tmp_path):
    from envfoundry.testing import StubServer

    save = tmp_path / "failed.jsonl"
    with StubServer(reply="I cannot say").run_in_thread() as url:
        r = cli(*_judge_args(url, "--labels", "support", "--limit", "2", "--save", str(save)))
        j = cli(*_judge_args(url, "--labels", "support", "--limit", "2", "--json"))
    assert r.returncode == 1, r.stdout + r.stderr
    err = " ".join(r.stderr.split())
    assert "error: 4 of 4 judgement(s) failed: no item could be scored" in err
    assert "4 x judge openai:stub gave no readable verdict" in err and "last reply: 'I cannot say'" in err
    assert "check the ids" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert all("error" in json.loads(x) for x in save.read_text().splitlines())
    assert j.returncode == 1
    info = json.loads(j.stdout)["info"]
    assert info["judge_errors"] == info["judgements"] == 4 and info["judge_error_causes"][0]["count"] == 4


def test_agree_counts_the_judgements_that_failed(tmp_path):
    from envfoundry.testing import StubServer

    first_ticket = json.loads(shipped_labels("support").with_name("items.jsonl").read_text().splitlines()[0])
    ticket = first_ticket["messages"][0]["content"].split("ticket ")[1].split(".")[0]  # the first 3 items' ticket
    with StubServer(reply=lambda req: "nope" if ticket in json.dumps(req) else SUPPORT_OK).run_in_thread() as url:
        r = cli(*_judge_args(url, "--labels", "support", "--limit", "6", "--repeats", "1", "--adversarial", "0",
                             "--pairs", "0", "--boot", "50"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "agree support: 3 items" in out
    assert "3 of 6 judgement(s) failed and were left out, never counted as a score" in out
    assert "3 x judge openai:stub gave no readable verdict" in out


def test_compare_without_scores_or_matching_ids_is_a_usage_error():
    from envfoundry.core.errors import UsageError

    labels = _labels([1, 0, 1])
    with pytest.raises(UsageError, match="no item scores"):
        compare(labels, [{"kind": "adversarial", "id": "0", "probe": "p", "passed": True}], n_boot=10)
    with pytest.raises(UsageError, match=r"labels have 3 item id\(s\) \(e.g. '0'\), the scores 1 \(e.g. 'x'\)"):
        compare(labels, [{"id": "x", "score": 1.0}], n_boot=10)
    with pytest.raises(UsageError, match="between 1 and 100000"):
        compare(labels, [{"id": "0", "score": 1.0}], n_boot=100_001)
    rep = compare(labels, [{"id": "0", "error": "judge failed: HTTP 503"}] * 2, n_boot=10)
    assert rep.n_items == 0 and rep.info["judge_error_causes"] == [
        {"count": 2, "cause": "judge failed: HTTP 503", "example": ""}]


def test_agree_with_a_run_of_another_environment_is_exit_2(tmp_path):
    import envfoundry

    envfoundry.evaluate("math", model="scripted:oracle", out=tmp_path / "r1", limit=2)
    r = cli("agree", "--labels", "support", "--run", str(tmp_path / "r1"))
    assert r.returncode == 2, r.stdout + r.stderr
    err = " ".join(r.stderr.split())
    assert "no id matches between the labels and the scores" in err
    assert "the labels have 42 item id(s) (e.g. 'c098fce6f3-oracle'), the scores 2 (e.g. '" in err


def test_saved_scores_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    from envfoundry.quality.agree import write_jsonl

    umask = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "score": 1}])
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "s.jsonl").stat().st_mode) == 0o644  # not mkstemp's 0600
