"""``agree`` on labels as users write them: CSV or JSON Lines with their own column names, a
label set and scale declared or inferred and then enforced, annotators without a grader, the items
where raters disagree, and what a hostile or careless file gets (a clear exit 2, or a warning that
--strict turns into an error). The metrics are checked against the ``krippendorff`` package and
scikit-learn."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from envfoundry.core.errors import UsageError
from envfoundry.grading.agreement import pairwise_agreement
from envfoundry.grading.coding import prepare_labels
from envfoundry.grading.compare import compare
from envfoundry.quality.agree import load_labels, load_scores
from tests.conftest import cli

BOOT = 50


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _csv(path: Path, header: str, rows: list[tuple]) -> Path:
    return _write(path, header + "\n" + "".join(",".join(str(c) for c in r) + "\n" for r in rows))


def _err(fn, *a, **kw) -> str:
    with pytest.raises(UsageError) as e:
        fn(*a, **kw)
    return " ".join(str(e.value).split())


def _alpha(rows: list[list[float]], level: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(krippendorff.alpha(reliability_data=np.array(rows, dtype=float), level_of_measurement=level))


# --------------------------------------------------------------------------- reading files


def test_csv_with_bom_spaces_and_its_own_column_names(tmp_path):
    text = "\ufeff item , rater ,verdict\n q1 , ann1 , pass \nq1,ann2,Pass\nq2,ann1,fail\nq2,ann2,fail\n\n"
    p = _write(tmp_path / "labels.csv", text)
    labels = load_labels(p, id_field="item", label_field="verdict", annotator_field="rater")
    assert [(r["id"], r["annotator"], r["label"]) for r in labels] == [
        ("q1", "ann1", "pass"), ("q1", "ann2", "Pass"), ("q2", "ann1", "fail"), ("q2", "ann2", "fail")]
    assert labels[0]["where"] == f"{p}:2"
    rep = compare(labels, n_boot=BOOT)  # no grader: the annotators among themselves
    assert rep.mode == "annotators" and rep.scale == "binary" and rep.n_items == 2
    assert rep.metric("pairwise_agreement").value == 1.0  # "pass" and "Pass" are one label
    assert any("differ only in case" in w and "'Pass' (1)" in w for w in rep.warnings)
    assert rep.disagreements == []


@pytest.mark.parametrize("name, text", [
    ("semi.csv", "id;label;annotator\na;1;x\na;0;y\nb;1;x\nb;1;y\n"),
    ("tabs.tsv", "id\tlabel\tannotator\na\t1\tx\na\t0\ty\nb\t1\tx\nb\t1\ty\n"),
    ("pandas.csv", ",id,label,annotator\n0,a,1,x\n1,a,0,y\n2,b,1,x\n3,b,1,y\n"),  # an unnamed index column
    ("crlf.csv", "id,label,annotator\r\na,1,x\r\na,0,y\r\nb,1,x\r\nb,1,y\r\n"),
    ("no_suffix", "id,label,annotator\na,1,x\na,0,y\nb,1,x\nb,1,y\n"),
    ("lines.txt", '{"id": "a", "label": 1, "annotator": "x"}\n{"id": "a", "label": 0, "annotator": "y"}\n'
                  '{"id": "b", "label": 1, "annotator": "x"}\n{"id": "b", "label": true, "annotator": "y"}\n'),
])
def test_fair_file_shapes_read_the_same(tmp_path, name, text):
    rep = compare(load_labels(_write(tmp_path / name, text)), n_boot=BOOT)
    assert rep.scale == "binary" and rep.n_items == 2
    assert rep.metric("pairwise_agreement").value == 0.5
    assert [d["id"] for d in rep.disagreements] == ["a"]


@pytest.mark.parametrize("text, kw, message", [
    ("id,verdict,annotator\na,1,x\n", {}, "no column 'label' (columns: id, verdict, annotator); name the column with "
                                          "--label-field"),
    ("id,Label\na,1\n", {}, "no column 'label' (columns: id, Label); did you mean 'Label'?"),
    ("item,label\na,1\n", {}, "no column 'id' (columns: item, label)"),
    ("id,label\na,1\n", {"annotator_field": "rater"}, "no column 'rater'"),
    ("", {}, "is empty"),
    ("\n\n  \n", {}, "is empty"),
    ("id,label,annotator\n", {}, "is empty (a header and no rows)"),
    ("id,label\na,1,extra\n", {}, "L:2: 3 field(s), but the header (line 1) has 2"),
    ("id,label,id\na,1,b\n", {}, "L:1: column 'id' appears twice"),
    ('[{"id": "a", "label": 1}]', {}, "holds a JSON array; agree reads JSON Lines"),
    ("id,label\n,1\n ,0\nc,1\n", {}, "2 row(s) with no 'id': L:2, L:3"),
    ("id,label,annotator\na,1,x\nb,1,\nc,0,\n", {}, "2 row(s) with no annotator in 'annotator': L:3, L:4"),
    ('{"id": 1.5, "label": 1}\n', {}, "1 row(s) whose 'id' is not text or a whole number: 1.5 (L:1)"),
    ('{"id": "a", "label": {"x": 1}}\n{"id": "b", "label": [1]}\n', {},
     "2 label(s) not a number, true/false or text"),
    ("id,label\na,\nb,\n", {}, "no labels (every label is empty or null)"),
    ('{"id": "a", "label": NaN}\n{"id": "b", "label": Infinity}\n', {}, "2 label(s) not a finite number: NaN (L:1)"),
])
def test_bad_label_files_are_exit_2_with_counts_and_lines(tmp_path, text, kw, message):
    p = _write(tmp_path / "labels.csv", text) if not text.startswith(("[", "{")) else _write(tmp_path / "l.jsonl", text)
    assert message.replace("L:", f"{p}:") in _err(load_labels, p, **kw)


def test_files_in_utf16_or_not_utf8_are_named(tmp_path):
    p = _write(tmp_path / "l.csv", "id,label\na,1\n".encode("utf-16"))
    assert "UTF-16 text; agree reads UTF-8" in _err(load_labels, p)
    p = _write(tmp_path / "l2.csv", b"id,label\na,\xe9\n")  # latin-1
    assert f"{p}:2: not UTF-8 text (byte 0xe9)" in _err(load_labels, p)


def test_ids_written_as_numbers_in_one_file_and_text_in_the_other_match(tmp_path):
    labels = _jsonl(tmp_path / "l.jsonl", [{"id": i, "label": i % 2} for i in range(40)])
    scores = _csv(tmp_path / "s.csv", "id,score", [(f" {i} ", float(i % 2)) for i in range(39)] + [("39.0", 1)])
    # 39.0 is not the id 39 (ids are text): reported, with the hint that they differ only in how they are written
    rep = compare(load_labels(labels), load_scores(scores), n_boot=BOOT)
    assert rep.n_items == 39 and rep.metric("accuracy").value == 1.0
    assert any("only 39 of 40 labelled item(s) have a score: 1 have none (e.g. '39')" in w and
               "1 would match ignoring case, spaces, leading zeros or '.0'" in w for w in rep.warnings)
    floats = _jsonl(tmp_path / "f.jsonl", [{"id": float(i), "score": i % 2} for i in range(40)])  # pandas' 7.0
    assert compare(load_labels(labels), load_scores(floats), n_boot=BOOT).n_items == 40


def test_no_matching_id_names_the_near_misses(tmp_path):
    labels = _jsonl(tmp_path / "l.jsonl", [{"id": f"{i:03d}", "label": i % 2} for i in range(20)])
    scores = _jsonl(tmp_path / "s.jsonl", [{"id": i, "score": i % 2} for i in range(20)])
    msg = _err(compare, load_labels(labels), load_scores(scores), n_boot=BOOT)
    assert "no id matches between the labels and the scores" in msg
    assert "20 would match ignoring case, spaces, leading zeros or '.0' (e.g. label '000' and score '0')" in msg


def test_only_3_of_105_ids_matching_is_a_warning_and_an_error_with_strict(tmp_path):
    labels = load_labels(_jsonl(tmp_path / "l.jsonl", [{"id": f"task-{i}", "label": i % 2} for i in range(105)]))
    scores = [{"id": f"task-{i}", "score": float(i % 2)} for i in range(3)] + [
        {"id": f"other-{i}", "score": 1.0} for i in range(7)]
    rep = compare(labels, scores, n_boot=BOOT)
    assert rep.n_items == 3
    assert "only 3 of 105 labelled item(s) have a score: 102 have none (e.g. 'task-3', 'task-4', 'task-5', ...)" \
        in rep.warnings
    assert "7 of 10 scored item(s) have no reference label (e.g. 'other-0', 'other-1', 'other-2', ...)" in rep.warnings
    msg = _err(compare, labels, scores, n_boot=BOOT, strict=True)
    assert msg.startswith("only 3 of 105 labelled item(s) have a score") and msg.endswith("(an error with --strict)")


# --------------------------------------------------------------------------- label set and scale


def test_zero_and_one_written_as_text_are_numbers_not_both_one(tmp_path):
    truth = [i % 2 for i in range(40)]
    guess = [v if i % 5 else 1 - v for i, v in enumerate(truth)]
    labels = load_labels(_jsonl(tmp_path / "l.jsonl", [{"id": i, "label": str(v)} for i, v in enumerate(truth)]))
    scores = load_scores(_jsonl(tmp_path / "s.jsonl", [{"id": i, "label": str(v)} for i, v in enumerate(guess)]))
    rep = compare(labels, scores, n_boot=BOOT)
    assert rep.scale == "binary"
    assert rep.metric("accuracy").value == pytest.approx(skm.accuracy_score(truth, guess))
    assert rep.metric("cohen_kappa").value == pytest.approx(skm.cohen_kappa_score(truth, guess))
    assert rep.confusion["matrix"] == skm.confusion_matrix(truth, guess).tolist()


def test_an_unsure_label_among_numbers_is_refused_then_read_as_a_category(tmp_path):
    rows = [(i, i % 2) for i in range(30)] + [(30, "Unsure"), (31, " unsure ")]
    labels = load_labels(_csv(tmp_path / "l.csv", "id,label", rows))
    msg = _err(compare, labels, None, n_boot=BOOT)
    assert "the labels mix numbers and text: 30 are numbers (0, 1) and 2 label(s) are text" in msg
    assert "--label-set 0,1,Unsure" in msg and "--scale nominal" in msg
    scores = [{"id": i, "label": i % 2} for i in range(30)] + [{"id": 30, "label": "UNSURE"}, {"id": 31, "label": 1}]
    rep = compare(labels, scores, scale="nominal", n_boot=BOOT)
    assert rep.scale == "nominal" and rep.label_set == ["0", "1", "Unsure"]
    assert rep.metric("accuracy").value == pytest.approx(31 / 32)
    want = _alpha([[i % 2 for i in range(30)] + [2, 2], [i % 2 for i in range(30)] + [2, 1]], "nominal")
    assert rep.metric("krippendorff_alpha_nominal").value == pytest.approx(want, abs=1e-9)


def test_text_labels_in_a_scores_file_never_crash_and_nominal_alpha_is_reported(tmp_path):
    cats = ["Successful", "Failed", "Unsure"]
    rng = np.random.default_rng(4)
    a = rng.integers(0, 3, 60)
    b = np.where(rng.random(60) < 0.7, a, rng.integers(0, 3, 60))
    labels = [{"id": f"t{i}", "label": cats[v], "annotator": "gold"} for i, v in enumerate(a)]
    scores = load_scores(_jsonl(tmp_path / "s.jsonl", [{"id": f"t{i}", "label": cats[v]} for i, v in enumerate(b)]))
    rep = compare(labels, scores, n_boot=BOOT)
    assert rep.scale == "nominal" and set(rep.label_set) == set(cats)
    code = {c: n for n, c in enumerate(sorted(cats, key=str.casefold))}
    want = _alpha([[code[cats[v]] for v in a], [code[cats[v]] for v in b]], "nominal")
    assert rep.metric("krippendorff_alpha_nominal").value == pytest.approx(want, abs=1e-9)
    assert rep.metric("cohen_kappa").value == pytest.approx(skm.cohen_kappa_score(a, b))
    assert rep.metric("spearman") is None  # no order among categories
    # a text verdict in the score field is a clear error, not float('Successful')
    bad = _jsonl(tmp_path / "bad.jsonl", [{"id": "t0", "score": "Successful"}])
    assert "'score'(s) not a finite number; a text verdict goes in 'label'" in _err(load_scores, bad)
    bad_csv = _csv(tmp_path / "bad.csv", "id,score", [("t0", "Successful"), ("t1", "0.5")])
    assert f"\"Successful\" ({bad_csv}:2)" in _err(load_scores, bad_csv)


def test_pass_fail_verdicts_map_onto_a_nominal_set_with_one_pass_and_one_fail_word():
    labels = [{"id": i, "label": ["Failed", "Successful", "Unsure"][i % 3]} for i in range(30)]
    scores = [{"id": i, "passed": i % 3 == 1} for i in range(30)]
    rep = compare(labels, scores, n_boot=BOOT)
    assert rep.scale == "nominal" and rep.metric("accuracy").value == pytest.approx(20 / 30)
    assert rep.confusion["labels"] == ["Failed", "Successful", "Unsure"]
    assert rep.confusion["matrix"] == [[10, 0, 0], [0, 10, 0], [10, 0, 0]]
    no_pair = [{"id": i, "label": ["red", "green", "blue"][i % 3]} for i in range(30)]
    assert "pass/fail verdict(s) that cannot be read as the categories" in _err(compare, no_pair, scores, n_boot=BOOT)


def test_binary_scale_with_text_labels_never_turns_everything_into_one(tmp_path):
    words = {0: "bad_x", 1: "good_x"}
    truth = [i % 2 for i in range(40)]
    labels = [{"id": i, "label": words[v]} for i, v in enumerate(truth)]
    scores = [{"id": i, "score": float(v)} for i, v in enumerate(truth)]
    msg = _err(compare, labels, scores, scale="binary", n_boot=BOOT)
    assert "say which is the fail and which the pass with --label-set FAIL,PASS" in msg
    rep = compare(labels, scores, scale="binary", label_set="bad_x,good_x", n_boot=BOOT)
    assert rep.metric("accuracy").value == 1.0 and rep.confusion["matrix"] == [[20, 0], [0, 20]]
    # known words need no declaration, in any case and spacing; a grader's yes/no reads the same way
    labels = [{"id": i, "label": [" FAIL", "pass "][v]} for i, v in enumerate(truth)]
    rep = compare(labels, [{"id": i, "label": ["no", "Yes"][v]} for i, v in enumerate(truth)], scale="binary",
                  n_boot=BOOT)
    assert rep.metric("accuracy").value == 1.0 and rep.label_set == ["FAIL", "pass"]
    assert rep.confusion["labels"] == ["FAIL", "pass"]


def test_binary_scale_refuses_other_numbers_and_other_grader_labels():
    labels = [{"id": i, "label": 1 + i % 5} for i in range(20)]
    msg = _err(compare, labels, [{"id": 0, "score": 1.0}], scale="binary", n_boot=BOOT)
    assert "16 label(s) are not 0 or 1: 2 x4 (label record 2, label record 7, ...)" in msg
    labels = [{"id": i, "label": i % 2} for i in range(20)]
    scores = [{"id": i, "label": "maybe" if i < 3 else i % 2} for i in range(20)]
    msg = _err(compare, labels, scores, n_boot=BOOT)
    assert "3 grader label(s) not on the labels' binary scale binary (0, 1): \"maybe\" x3" in msg
    assert "use --scale nominal" in msg


def test_a_declared_label_set_is_enforced_on_labels_and_verdicts(tmp_path):
    p = _csv(tmp_path / "l.csv", "id,label,annotator", [("a", "x", "p"), ("b", "y", "p"), ("c", "d", "p"),
                                                         ("d", "D ", "q"), ("e", "z", "q")])
    labels = load_labels(p)
    msg = _err(compare, labels, None, label_set="x,y,z", n_boot=BOOT)
    assert f"2 label(s) outside the label set (x,y,z): \"d\" ({p}:4), \"D\" ({p}:5)" in msg
    scores = [{"id": "a", "label": "x"}, {"id": "b", "label": "w"}]
    assert "1 grader label(s) outside the label set" in _err(compare, labels, scores, label_set="x,y,z,d")
    assert "--label-set names 'x' twice" in _err(compare, labels, None, label_set="x,X,y")
    assert "--label-set needs labels separated by commas" in _err(compare, labels, None, label_set=" , ,")
    rep = compare(labels, [{"id": "a", "label": "X"}, {"id": "b", "label": "y"}], label_set="x,y,z,d", n_boot=BOOT)
    assert rep.label_set == ["x", "y", "z", "d"] and rep.metric("accuracy").value == 1.0
    assert any("matched --label-set ignoring case" in n for n in rep.notes)


def test_ordered_text_labels_take_their_order_from_the_label_set():
    order = ["low", "mid", "high"]
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, 50)
    b = np.clip(a + rng.integers(-1, 2, 50), 0, 2)
    labels = [{"id": i, "label": order[v]} for i, v in enumerate(a)]
    scores = [{"id": i, "label": order[v]} for i, v in enumerate(b)]
    assert "give their order with --label-set LOWEST,...,HIGHEST" in _err(compare, labels, scores, scale="ordinal")
    rep = compare(labels, scores, scale="ordinal", label_set="low,mid,high", n_boot=BOOT)
    assert rep.metric("krippendorff_alpha_ordinal").value == pytest.approx(_alpha([a, b], "ordinal"), abs=1e-9)
    assert rep.metric("krippendorff_alpha_nominal").value == pytest.approx(_alpha([a, b], "nominal"), abs=1e-9)
    assert rep.metric("cohen_kappa_quadratic").value == pytest.approx(
        skm.cohen_kappa_score(a, b, weights="quadratic"))
    assert "a score cannot" not in str(rep.to_dict())
    assert "cannot be placed on the ordered text labels" in _err(
        compare, labels, [{"id": 0, "score": 0.5}], scale="ordinal", label_set="low,mid,high")


def test_scores_on_another_scale_than_the_labels_are_a_warning():
    labels = [{"id": i, "label": 1 + i % 5} for i in range(40)]
    scores = [{"id": i, "score": (i % 5) / 4} for i in range(40)]
    rep = compare(labels, scores, n_boot=BOOT)
    assert rep.scale == "ordinal"
    assert any("the grader's scores lie in [0, 1] but the labels run from 1 to 5" in w for w in rep.warnings)
    assert "(an error with --strict)" in _err(compare, labels, scores, strict=True)
    rep = compare(labels, [{"id": i, "score": 1 + i % 5} for i in range(40)], n_boot=BOOT)
    assert not any("scale" in w for w in rep.warnings) and rep.metric("accuracy").value == 1.0


def test_continuous_labels_get_interval_alpha_and_no_nominal_one():
    rng = np.random.default_rng(2)
    a = rng.random(40).round(3)
    b = (a + rng.normal(0, 0.1, 40)).round(3)
    rep = compare([{"id": i, "label": float(v)} for i, v in enumerate(a)],
                  [{"id": i, "score": float(v)} for i, v in enumerate(b)], n_boot=BOOT)
    assert rep.scale == "continuous" and rep.metric("krippendorff_alpha_nominal") is None
    assert rep.metric("krippendorff_alpha_interval").value == pytest.approx(_alpha([a, b], "interval"), abs=1e-9)
    assert rep.label_set == [] or rep.to_dict()["info"]["label_set"] is None


def test_reversed_pass_fail_declaration_is_a_warning():
    labels = [{"id": i, "label": ["yes", "no"][i % 2]} for i in range(10)]
    rep = compare(labels, [{"id": i, "passed": i % 2 == 0} for i in range(10)], scale="binary",
                  label_set="yes,no", n_boot=BOOT)
    assert any("the reverse of their usual sense" in w for w in rep.warnings)
    assert rep.metric("accuracy").value == 0.0  # as declared: 'yes' is the fail


def test_duplicates_same_value_count_once_other_value_is_exit_2(tmp_path):
    p = _csv(tmp_path / "l.csv", "id,label,annotator", [("a", 1, "x"), ("a", 1, "x"), ("b", 0, "x"), ("b", 1, "x"),
                                                         ("c", 1, "x"), ("c", "0.0", "x")])
    msg = _err(prepare_labels, load_labels(p))
    assert "2 item(s) labelled twice by one annotator with different labels" in msg
    assert f"'b' by 'x': 0 vs 1 ({p}:4 and {p}:5)" in msg and f"'c' by 'x': 1 vs 0 ({p}:6 and {p}:7)" in msg
    ok = _csv(tmp_path / "ok.csv", "id,label,annotator", [("a", 1, "x"), ("a", "1.0", "x"), ("a", 0, "y")])
    data = prepare_labels(load_labels(ok))
    assert data.by == {"x": {"a": 1.0}, "y": {"a": 0.0}} and data.info["repeated_labels"] == 1


def test_spellings_that_differ_in_case_warn_and_strict_refuses():
    labels = [{"id": i, "label": "Pass" if i < 3 else ["pass", "fail"][i % 2], "annotator": "x"} for i in range(20)]
    rep = compare(labels, [{"id": i, "passed": True} for i in range(20)], n_boot=BOOT)
    assert rep.label_set == ["fail", "pass"]
    msg = _err(compare, labels, None, strict=True)
    assert "labels that differ only in case were read as one label 'pass'" in msg and "--strict" in msg


def test_threshold_must_split_the_scores():
    from envfoundry.grading.coding import check_threshold

    unit = [{"id": "a", "score": 0.2}, {"id": "b", "score": 0.9}]
    check_threshold(0.5, unit)
    for bad in (-1.0, 2.0, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="from 0 to 1"):
            check_threshold(bad, unit)
    check_threshold(7.0, [{"id": "a", "score": 3}, {"id": "b", "score": 10}])  # a grader scoring 0-10
    with pytest.raises(UsageError, match="from 0 to 10"):
        check_threshold(11.0, [{"id": "a", "score": 3}, {"id": "b", "score": 10}])


# --------------------------------------------------------------------------- annotators alone


def test_annotators_alone_with_three_categories_match_krippendorff_and_list_disagreements():
    cats = ["Failed", "Successful", "Unsure"]
    rng = np.random.default_rng(9)
    truth = rng.integers(0, 3, 45)
    anns = {"ann1": truth, "ann2": np.where(rng.random(45) < 0.8, truth, rng.integers(0, 3, 45)),
            "ann3": np.where(rng.random(45) < 0.6, truth, rng.integers(0, 3, 45))}
    skip = {("ann3", 4), ("ann2", 7), ("ann3", 7)}  # item 7: one label only
    labels = [{"id": f"q{i}", "label": cats[v], "annotator": a} for a, vals in anns.items()
              for i, v in enumerate(vals) if (a, i) not in skip]
    rep = compare(labels, None, n_boot=BOOT)
    assert rep.mode == "annotators" and rep.scale == "nominal" and rep.n_items == 44
    mat = np.array([[np.nan if (a, i) in skip else v for i, v in enumerate(vals)] for a, vals in anns.items()])
    assert rep.metric("krippendorff_alpha_nominal (annotators)").value == pytest.approx(
        _alpha(mat.tolist(), "nominal"), abs=1e-9)
    units = [i for i in range(45) if i != 7]
    brute = np.mean([np.mean([mat[x, i] == mat[y, i] for x in range(3) for y in range(3)
                              if x != y and not np.isnan(mat[x, i]) and not np.isnan(mat[y, i])]) for i in units])
    assert rep.metric("pairwise_agreement").value == pytest.approx(brute)
    want = {f"q{i}" for i in units if len({mat[a, i] for a in range(3) if not np.isnan(mat[a, i])}) > 1}
    assert {d["id"] for d in rep.disagreements} == want and want
    first = rep.disagreements[0]
    assert first["spread"] == max(d["spread"] for d in rep.disagreements)
    assert set(first["labels"]) <= set(anns) and set(first["labels"].values()) <= set(cats)
    assert {(r["a"], r["b"]) for r in rep.raters} == {("ann1", "ann2"), ("ann1", "ann3"), ("ann2", "ann3")}
    assert "1 item(s) labelled by one annotator only: not compared" in rep.notes


def test_grader_report_lists_disagreements_with_reference_and_grader():
    labels = [{"id": i, "label": i % 2, "annotator": a} for i in range(30) for a in ("gold", "b")]
    labels[5]["label"] = 1 - labels[5]["label"]  # gold vs b disagree on item 2
    scores = [{"id": i, "passed": bool(i % 2) if i != 10 else True} for i in range(30)]
    rep = compare(labels, scores, n_boot=BOOT)
    assert {d["id"] for d in rep.disagreements} == {"2", "10"}
    d10 = next(d for d in rep.disagreements if d["id"] == "10")
    assert d10 == {"id": "10", "labels": {"gold": "0", "b": "0", "grader": "1"}, "spread": pytest.approx(1 / 3),
                   "majority": "0", "reference": "0", "grader": "1", "grader_agrees": False}
    assert rep.metric("krippendorff_alpha_nominal (annotators+grader)") is not None


def test_an_annotator_named_grader_keeps_its_name():
    labels = [{"id": i, "label": i % 2, "annotator": a} for i in range(10) for a in ("gold", "grader")]
    rep = compare(labels, [{"id": i, "passed": True} for i in range(10)], n_boot=BOOT)
    assert {(r["a"], r["b"]) for r in rep.raters} == {("gold", "grader"), ("gold", "grader (scores)"),
                                                      ("grader", "grader (scores)")}


def test_annotators_alone_needs_two_annotators_and_shared_items():
    assert "needs two or more annotators, but every label is 'annotator''s" in _err(
        compare, [{"id": i, "label": i % 2} for i in range(5)], None)
    assert "no item has labels from two annotators" in _err(
        compare, [{"id": i, "label": i % 2, "annotator": f"a{i % 2}"} for i in range(6)], None)
    assert "--reference applies when a grader is compared" in _err(
        compare, [{"id": i, "label": i % 2, "annotator": a} for i in range(4) for a in "xy"], None, reference="x")


@st.composite
def _ratings(draw):
    n_ann, n_items, k = draw(st.integers(2, 4)), draw(st.integers(2, 25)), draw(st.integers(2, 4))
    cells = draw(st.lists(st.one_of(st.none(), st.integers(0, k - 1)), min_size=n_ann * n_items,
                          max_size=n_ann * n_items))
    return np.array([[np.nan if c is None else c for c in cells[a * n_items:(a + 1) * n_items]]
                     for a in range(n_ann)], dtype=float)


@seed(20250101)
@settings(max_examples=60, deadline=None)
@given(_ratings(), st.sampled_from(["jsonl-num", "jsonl-text", "csv"]))
def test_annotator_agreement_equals_krippendorff_whatever_the_file_format(tmp_path_factory, mat, fmt):
    names = ["Failed", "ok", "Unsure", "meh"]
    d = tmp_path_factory.mktemp("r")
    rows = [(f"item{i}", f"ann{a}", int(mat[a, i])) for a in range(mat.shape[0]) for i in range(mat.shape[1])
            if not np.isnan(mat[a, i])]
    text = fmt == "jsonl-text"
    if fmt == "csv":
        p = _csv(d / "l.csv", "\ufeffid,annotator,label", [(i, a, f" {names[v]} ") for i, a, v in rows])
    else:
        p = _jsonl(d / "l.jsonl", [{"id": i, "annotator": a, "label": names[v] if text else v} for i, a, v in rows])
    shared = [i for i in range(mat.shape[1]) if np.sum(~np.isnan(mat[:, i])) >= 2]
    raters = {a for _, a, _ in rows}
    if not rows or len(raters) < 2 or not shared:
        with pytest.raises(UsageError):
            compare(load_labels(p), None, n_boot=5)
        return
    rep = compare(load_labels(p), None, n_boot=5)
    keep = [a for a in range(mat.shape[0]) if f"ann{a}" in raters]
    sub = mat[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want = float(krippendorff.alpha(reliability_data=sub, level_of_measurement="nominal"))
        except ValueError:
            want = float("nan")
    got = rep.metric("krippendorff_alpha_nominal (annotators)")
    if np.isfinite(want):
        assert got.value == pytest.approx(want, abs=1e-9)
    else:
        assert got is None or not np.isfinite(got.value)
    assert rep.metric("pairwise_agreement").value == pytest.approx(pairwise_agreement(sub), abs=1e-12)
    want_ids = {f"item{i}" for i in shared if len(set(sub[:, i][~np.isnan(sub[:, i])])) > 1}
    assert {x["id"] for x in rep.disagreements} == want_ids


# --------------------------------------------------------------------------- the command line


def test_cli_annotators_alone_from_csv_with_named_columns(tmp_path):
    cats = ["Failed", "Successful", "Unsure"]
    rows = [(f"t{i}", w, cats[(i + (w == "b" and i % 4 == 0)) % 3]) for i in range(12) for w in ("a", "b")]
    p = _csv(tmp_path / "l.csv", "task,who,grade", rows)
    r = cli("agree", "--labels", str(p), "--id-field", "task", "--annotator-field", "who", "--label-field", "grade",
            "--boot", "50")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "12 items labelled twice or more, nominal labels (Failed, Successful, Unsure), annotators only" in out
    assert "krippendorff_alpha_nominal (annotators)" in out and "cohen_kappa" in out
    assert "items where the raters disagree: 3" in out and "t0" in out and "a=Failed, b=Successful" in out
    j = json.loads(cli("agree", "--labels", str(p), "--id-field", "task", "--annotator-field", "who",
                       "--label-field", "grade", "--boot", "50", "--json").stdout)
    assert j["mode"] == "annotators" and [d["id"] for d in j["disagreements"]] == ["t0", "t4", "t8"]
    assert j["confusion"]["rows"] == "a" and j["confusion"]["columns"] == "b"
    r = cli("agree", "--labels", str(p), "--annotator-field", "who", "--label-field", "grade")
    assert r.returncode == 2 and "no column 'id' (columns: task, who, grade)" in " ".join(r.stderr.split())
    r = cli("agree", "--labels", str(p), "--id-field", "task", "--annotator-field", "who", "--label-field", "grade",
            "--threshold", "0.5")
    assert r.returncode == 2 and "--threshold only applies to a grader's scores" in r.stderr


def test_cli_strict_turns_the_unmatched_ids_warning_into_exit_2(tmp_path):
    labels = _jsonl(tmp_path / "l.jsonl", [{"id": i, "label": i % 2} for i in range(105)])
    scores = _csv(tmp_path / "s.csv", "id,passed", [(i, ["false", "TRUE"][i % 2]) for i in range(3)])
    r = cli("agree", "--labels", str(labels), "--scores", str(scores), "--boot", "20")
    assert r.returncode == 0, r.stderr
    assert "warning: only 3 of 105 labelled item(s) have a score: 102 have none" in " ".join(r.stdout.split())
    r = cli("agree", "--labels", str(labels), "--scores", str(scores), "--boot", "20", "--strict")
    assert r.returncode == 2 and "(an error with --strict)" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("extra, message", [
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--temperature", "inf"], "--temperature must be a finite number"),
    (["--threshold", "-1"], "--threshold must be a number from 0 to 1"),
    (["--threshold", "2"], "--threshold must be a number from 0 to 1"),
    (["--label-set", "a,b", "--scale", "binary"], "126 label(s) outside the label set (a,b): 1 x72"),
])
def test_cli_judge_options_are_checked_before_any_request(tmp_path, extra, message):
    from envfoundry.testing import StubServer

    srv = StubServer(reply="verified: yes")
    with srv.run_in_thread() as url:
        r = cli("agree", "--labels", "support", "--judge", "support", "--model", "openai:stub", "--base-url", url,
                "--limit", "2", *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr
    assert srv.n_requests == 0


def test_cli_judge_only_options_without_a_judge_are_refused(tmp_path):
    r = cli("agree", "--labels", "support", "--temperature", "0.5")
    assert r.returncode == 2 and "--temperature only applies with --judge" in r.stderr


def test_ctrl_c_while_judging_exits_130_quietly(tmp_path):
    from envfoundry.testing import StubServer

    srv = StubServer("timeout", hang_s=60)
    with srv.run_in_thread() as url:
        p = subprocess.Popen([sys.executable, "-m", "envfoundry", "agree", "--labels", "support", "--judge", "support",
                              "--model", "openai:stub", "--base-url", url, "--limit", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
        deadline = time.time() + 30
        while srv.n_requests == 0 and time.time() < deadline:
            time.sleep(0.02)
        assert srv.n_requests > 0
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip() == "interrupted", err  # no "Task was destroyed but it is pending!", no atexit traceback


@pytest.mark.local_model
def test_ctrl_c_stops_a_local_judge_server(tmp_path):
    """Ctrl-C while the local judge loads and while it judges: exit 130, nothing else printed, and
    no llama.cpp server of this command left running."""
    pytest.importorskip("llama_cpp")

    def servers() -> set[str]:
        return set(subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True).stdout.split())

    for wait_for_server in (False, True):
        before = servers()
        p = subprocess.Popen([sys.executable, "-m", "envfoundry", "agree", "--labels", "support", "--judge", "support",
                              "--model", "local", "--limit", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
        deadline = time.time() + 120
        # a judge server process exists: the command is past its imports (on a loaded machine they take
        # more than a second) and the judge is loading
        while not servers() - before and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if wait_for_server:
            time.sleep(8)  # loaded, and judging
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130 and err.strip() == "interrupted", err
        time.sleep(0.5)
        assert servers() <= before


def test_confusion_matrix_of_codes_in_a_given_order_equals_sklearn():
    from envfoundry.grading import agreement as A

    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 4, 300).astype(float), rng.integers(0, 5, 300).astype(float)
    order = [3.0, 1.0, 0.0, 2.0, 7.0]  # 4 is left out, 7 never occurs
    assert (A.confusion_matrix(a, b, order) == skm.confusion_matrix(a, b, labels=order)).all()
    assert A.cohen_kappa(a, b, labels=order, weights="linear") == pytest.approx(
        skm.cohen_kappa_score(a, b, labels=order, weights="linear"))
