"""``envfoundry scorecard``: identity and content hash, what check/audit/calibrate/agree stored, missing
parts shown as missing, three formats; the HTML page in a real Chromium against the JSON."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from envfoundry.core.provenance import SCORECARD_FILE, content_hash, file_hashes
from envfoundry.hub.model import Scorecard
from envfoundry.hub.render import fmt

from .conftest import ROOT, cli

CHROMIUM = Path("/usr/bin/chromium")
COUNTER = str(ROOT / "examples" / "counter_env.py") + ":make_env"


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """math with check, audit (--run-missing), two calibrations; shop with nothing; support with an agreement."""
    from envfoundry.quality import CalibrateConfig, agree, calibrate

    work = tmp_path_factory.mktemp("scorecards")
    for model in ("scripted:random", "scripted:oracle"):
        calibrate("math", model=model, out=work / "quality" / "math" / f"calibration-{model.split(':')[1]}",
                  config=CalibrateConfig(limit=6, samples=2, budget=12))
    rep = agree("support", boot=100)
    (work / "quality" / "support").mkdir(parents=True)
    (work / "quality" / "support" / "agree.json").write_text(json.dumps(rep.to_dict()))
    runs = {"math": cli("scorecard", "math", "--run-missing", "--limit", "3", "--samples", "1", cwd=work),
            "shop": cli("scorecard", "shop", cwd=work),
            "support": cli("scorecard", "support", "--out", "sc-support", cwd=work)}
    out = {"math": work / "quality" / "math", "shop": work / "quality" / "shop", "support": work / "sc-support"}
    return {"work": work, "runs": runs, "out": out}


def _card(cards, name: str) -> dict:
    return json.loads((cards["out"][name] / "scorecard.json").read_text())


@pytest.mark.parametrize("name", ["math", "shop", "support"])
def test_scorecard_writes_the_three_formats(cards, name):
    r = cards["runs"][name]
    assert r.returncode == 0, r.stdout + r.stderr
    card = Scorecard.model_validate(_card(cards, name))  # the JSON is the schema's
    assert card.identity.env == name and card.identity.package == "envfoundry"
    assert card.identity.content_hash.startswith("sha256:") and card.splits["test"] > 0
    md = (cards["out"][name] / "scorecard.md").read_text()
    page = (cards["out"][name] / "scorecard.html").read_text()
    assert card.identity.content_hash in md and card.identity.content_hash in page
    # self-contained: no scripts, no external stylesheets, images or fonts
    assert "<script" not in page and "<link" not in page and "src=" not in page and "url(" not in page


def test_missing_parts_are_shown_as_missing_never_as_passed(cards):
    card = _card(cards, "shop")
    for part in ("check", "audit", "calibration"):
        assert card[part]["status"] == "missing", part
    assert card["check"]["ok"] is None and card["audit"]["ok"] is None and card["check"]["passed"] is None
    assert "envfoundry check shop" in card["check"]["command"] and "envfoundry audit shop" in card["audit"]["command"]
    page = (cards["out"]["shop"] / "scorecard.html").read_text()
    assert page.count(">MISSING<") >= 3 and "passes" not in page and "no failing finding" not in page
    md = (cards["out"]["shop"] / "scorecard.md").read_text()
    assert md.count("**MISSING**") >= 3


def test_math_reads_what_check_audit_and_calibrate_stored(cards):
    card = _card(cards, "math")
    assert card["check"]["status"] == "present" and card["check"]["pinned"] is True and card["check"]["ok"] is True
    assert card["audit"]["status"] == "present" and card["audit"]["pinned"] is True
    assert list(card["audit"]["findings_by_severity"])[:3] == ["crash", "stall", "exploit"]  # by severity
    assert card["audit"]["exploit_rate"] and card["audit"]["mutation_kill_rate"] is not None
    models = {m["model"]: m for m in card["calibration"]["models"]}
    assert set(models) == {"scripted:random", "scripted:oracle"}
    for m in models.values():
        assert sum(m["histogram"]) == m["tasks"] == 6 and "--model=" in m["command"]
        assert abs(sum(m["band_shares"].values()) - 1) < 1e-9
    assert models["scripted:oracle"]["histogram"][-1] == 6  # every task always passes
    assert models["scripted:oracle"]["zero_variance_share"] == 1.0
    assert card["agreement"]["status"] == "not_applicable"  # math ships no labels


def test_support_reads_a_stored_agreement(cards):
    card = _card(cards, "support")
    g = card["agreement"]
    assert g["status"] == "present" and g["labels"] == "labels.jsonl" and g["n_items"] == 42
    assert {m["name"] for m in g["metrics"]} >= {"pairwise_agreement"}
    assert card["check"]["status"] == "missing"  # nothing else was stored for support


def _resolve(doc, pointer: str):
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system's Chromium at /usr/bin/chromium (Debian package "
                    "`chromium`) for the browser test")
def test_the_html_page_renders_in_chromium_and_its_figures_match_the_json(cards):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            checked = {}
            for name in ("math", "shop"):
                doc = _card(cards, name)
                page.goto((cards["out"][name] / "scorecard.html").as_uri())
                assert page.title() == f"{name} {doc['identity']['env_version']} - envfoundry scorecard"
                assert page.locator("h1").inner_text().startswith(name)
                figures = page.eval_on_selector_all("[data-key]", """els => els.map(e => ({
                    key: e.dataset.key, value: e.dataset.value, fmt: e.dataset.fmt || null,
                    text: e.textContent, box: e.getBoundingClientRect().width * e.getBoundingClientRect().height}))""")
                for f in figures:
                    want = _resolve(doc, f["key"])
                    assert json.loads(f["value"]) == want, f
                    if f["fmt"]:
                        assert f["text"] == fmt(want, f["fmt"]), f
                        assert f["box"] > 0, f"{f['key']} is not drawn"
                checked[name] = {f["key"] for f in figures}
            assert requests and all(u.startswith("file://") for u in requests), requests  # nothing fetched
            math = checked["math"]
            for key in ("/check/passed", "/audit/mutation_kill_rate", "/audit/mutation_preservation_rate",
                        "/calibration/models/0/histogram/9", "/calibration/models/1/zero_variance_share",
                        "/audit/findings_by_severity/exploit", "/splits/test", "/identity/content_hash"):
                assert key in math, key
            assert any(k.startswith("/audit/exploit_rate/") for k in math)
            assert {"/check/status", "/audit/status"} <= checked["shop"] and "/check/passed" not in checked["shop"]
            page.goto((cards["out"]["shop"] / "scorecard.html").as_uri())
            assert page.locator("#check + span + p .badge.missing").inner_text() == "MISSING"
        finally:
            browser.close()


# ------------------------------------------------------------------------ content hash and staleness
def test_the_content_hash_is_sha256sum_of_the_sorted_files(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub dir").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "__init__.py").write_text("x = 1\n")
    (root / "sub dir" / "données.json").write_text('{"a": 1}')
    (root / "Zeta.txt").write_bytes(b"\x00\xff")
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (root / "stale.pyc").write_bytes(b"junk")
    (root / SCORECARD_FILE).write_text("{}")
    files = file_hashes(root)
    assert sorted(files) == ["Zeta.txt", "__init__.py", "sub dir/données.json"]
    lines = "".join(f"{hashlib.sha256((root / p).read_bytes()).hexdigest()}  {p}\n" for p in sorted(files))
    assert content_hash(files) == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    if Path("/usr/bin/sha256sum").exists():  # the rule as the module documents it, in a shell
        sh = ("find . -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' ! -path ./envfoundry_scorecard.json | "
              "sed 's|^\\./||' | LC_ALL=C sort | tr '\\n' '\\0' | xargs -0 sha256sum | sha256sum")
        out = subprocess.run(["sh", "-c", sh], cwd=root, capture_output=True, text=True).stdout.split()[0]
        assert content_hash(files) == "sha256:" + out
    (root / "__init__.py").write_text("x = 2\n")
    assert content_hash(file_hashes(root)) != content_hash(files)


def test_results_of_another_version_or_older_than_the_files_are_stale(tmp_path):
    """A copy of an environment file: an audit that records no hash counts only when newer than the file;
    one of another version never counts; the scorecard says why, and --run-missing replaces it."""
    from envfoundry.hub.scorecard import ScorecardOptions, build_scorecard

    env_file = tmp_path / "counter_env.py"
    env_file.write_text((ROOT / "examples" / "counter_env.py").read_text())
    spec = f"{env_file}:make_env"
    q = tmp_path / "q"
    base = {"env": "counter", "findings": [], "probes": [], "exploit_rate": {"empty": 0.0}, "tasks": 2,
            "samples": 1, "seed": 0, "split": "test", "mutation_kill_rate": 1.0, "mutation_preservation_rate": 1.0}
    (q / "audit-old-version").mkdir(parents=True)
    (q / "audit-old-version" / "audit.json").write_text(json.dumps({**base, "env_version": "0.9"}))
    card = build_scorecard(spec, ScorecardOptions(sources=[q]))
    assert card.audit.status == "stale" and "version 0.9" in card.audit.note and card.check.status == "missing"
    (q / "audit-now").mkdir()
    (q / "audit-now" / "audit.json").write_text(json.dumps({**base, "env_version": "1.0"}))
    assert build_scorecard(spec, ScorecardOptions(sources=[q])).audit.status == "present"
    later = time.time() + 5
    os.utime(env_file, (later, later))  # the environment changed after the audit
    card = build_scorecard(spec, ScorecardOptions(sources=[q]))
    assert card.audit.status == "stale" and "counter_env.py" in card.audit.note
    card = build_scorecard(spec, ScorecardOptions(sources=[q], run_missing=True, limit=2, samples=1))
    os.utime(env_file, None)
    assert card.check.status == "present" and card.check.pinned is True
    assert card.audit.status == "present" and card.audit.source != str(q / "audit-now")


def test_a_scorecard_of_an_unknown_environment_is_a_usage_error(tmp_path):
    r = cli("scorecard", "no-such-env", cwd=tmp_path)
    assert r.returncode == 2 and "no-such-env" in r.stderr
    r = cli("scorecard", COUNTER, "--json", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["identity"]["root"] == "counter_env.py" and doc["identity"]["package"] is None
    assert doc["check"]["status"] == "missing" and (tmp_path / "o" / "scorecard.html").is_file()


def test_text_from_the_environment_cannot_inject_markup(tmp_path):
    """Names, messages and notes come from environments and results: the page escapes them all."""
    from envfoundry.hub.model import FindingItem
    from envfoundry.hub.render import html, markdown
    from envfoundry.hub.scorecard import build_scorecard

    card = build_scorecard(COUNTER)
    evil = "<script>alert(1)</script>"
    ident = card.identity.model_copy(update={"env": evil, "spec": evil})
    audit = card.audit.model_copy(update={"status": "present", "note": evil, "exploit_rate": {evil: 0.5},
                                          "findings": [FindingItem(kind="exploit", where="probe", name=evil,
                                                                   message=evil, fails=True)]})
    bad = card.model_copy(update={"identity": ident, "audit": audit, "splits": {evil: 3}})
    page = html(bad)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "| a\\|x | 1 |" in markdown(bad.model_copy(update={"splits": {"a|x": 1}}))  # a cell, not two
