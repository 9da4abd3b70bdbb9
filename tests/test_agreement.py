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
from envfoundry.grading.agree import compare, load_labels, run_judge, shipped_labels
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
    assert cli("agree", "--labels", "support").returncode == 2
    assert cli("agree", "--labels", "support", "--scores", str(scores), "--run", str(tmp_path)).returncode == 2
    assert cli("agree", "--labels", str(tmp_path / "nope.jsonl"), "--scores", str(scores)).returncode == 2


def test_report_json_keeps_text_and_turns_nan_into_null():
    from envfoundry.grading.agree import _json_safe

    data = {"kappa": float("nan"), "note": "NaN labels dropped", "ci": (np.float64(0.5), float("inf")), 3: "k"}
    assert json.loads(json.dumps(_json_safe(data), allow_nan=False)) == {
        "kappa": None, "note": "NaN labels dropped", "ci": [0.5, None], "3": "k"}


@pytest.mark.parametrize("labels, scores, extra, message", [
    ('{"id": "a", "label": 1}\n{"id": "b", "label": "bad"}\n', '{"id": "a", "score": 1}\n', [],
     "labels mix numbers (record 1) and text (record 2)"),
    ('{"id": "a", "label": [1]}\n', '{"id": "a", "score": 1}\n', [], "a label is a number, true/false or text"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": "high"}\n', [], "'score' must be a finite number"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "passed": "yes"}\n', [], "'passed' must be true or false"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--scale", "bogus"], "unknown scale 'bogus'"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--boot", "-1"], "--boot must be >= 1"),
    ('{"id": "a", "label": 1}\n', '{"id": "a", "score": 1}\n', ["--threshold", "nan"], "finite number"),
])
def test_agree_rejects_bad_values_with_exit_2(tmp_path, labels, scores, extra, message):
    from tests.conftest import cli

    (tmp_path / "l.jsonl").write_text(labels)
    (tmp_path / "s.jsonl").write_text(scores)
    r = cli("agree", "--labels", str(tmp_path / "l.jsonl"), "--scores", str(tmp_path / "s.jsonl"), *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr


def test_null_labels_are_missing_not_errors(tmp_path):
    from envfoundry.grading.agree import compare, load_labels

    (tmp_path / "l.jsonl").write_text('{"id": "a", "label": null, "annotator": "x"}\n'
                                      '{"id": "a", "label": 1, "annotator": "y"}\n'
                                      '{"id": "b", "label": 0, "annotator": "y"}\n')
    labels = load_labels(tmp_path / "l.jsonl")
    assert [r["annotator"] for r in labels] == ["y", "y"]
    rep = compare(labels, [{"id": "a", "score": 1.0}, {"id": "b", "score": 0.0}], n_boot=50)
    assert rep.n_items == 2
