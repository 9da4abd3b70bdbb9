"""The viewer's parts without a browser: the trajectory index (growing, replaced, torn and damaged
files; its cache outside the run), the served-folder check, escaping, and the command line."""

from __future__ import annotations

import json
import os
import socket
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envfoundry import evaluate
from envfoundry.cli import main
from envfoundry.rollout.store import TRAJECTORIES, RunStore, encode_record
from envfoundry.rollout.summary import summarize
from envfoundry.viewer import index as vi
from envfoundry.viewer.cache import IndexCache
from envfoundry.viewer.html import tag
from envfoundry.viewer.index import build
from envfoundry.viewer.pages_runs import select_rows
from envfoundry.viewer.roots import Outside, Roots


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ix") / "run"
    evaluate("math", model="scripted:random", out=out, limit=5, samples=3)
    return out


def _lines(run: Path) -> list[bytes]:
    return (run / TRAJECTORIES).read_bytes().splitlines(keepends=True)


def _copy(run: Path, dst: Path, lines: list[bytes]) -> Path:
    dst.mkdir()
    (dst / "manifest.json").write_bytes((run / "manifest.json").read_bytes())
    (dst / TRAJECTORIES).write_bytes(b"".join(lines))
    return dst


def test_the_index_gives_the_figures_the_run_store_gives(run):
    store = RunStore.open(run)
    recs = list(store.records())
    ix = build(run, store.manifest)
    assert len(ix) == len(recs) == 15
    mine, theirs = ix.summary(3), summarize(recs, samples=3)
    for key in ("n_trajectories", "n_scored", "outcomes", "passes", "pass_rate", "pass_at_k", "pass_hat_k"):
        assert mine[key] == theirs[key], key
    for r in (0, 7, 14):  # a record read back through its offset is the same record
        rec = ix.read(r)
        assert (rec["task_id"], rec["sample"]) == (ix.tasks[int(ix.cols["task"][r])], int(ix.cols["sample"][r]))


def test_a_growing_file_is_indexed_from_where_it_stopped_and_a_torn_line_waits(run, tmp_path, monkeypatch):
    lines = _lines(run)
    d = _copy(run, tmp_path / "r", lines[:10] + [lines[10][:40]])  # a torn last line: still being written
    m = RunStore.open(d).manifest
    first = build(d, m)
    assert len(first) == 10 and first.end == sum(map(len, lines[:10]))
    with open(d / TRAJECTORIES, "r+b") as f:  # the writer finishes its line and adds more, in place
        f.seek(first.end)
        f.write(b"".join(lines[10:]))
    seen: list[object] = []
    real = vi.problem
    monkeypatch.setattr(vi, "problem", lambda rec: (seen.append(rec), real(rec))[1])
    second = build(d, m, first)
    assert len(seen) == 5  # only the new lines were read
    assert len(second) == 15 and list(second.cols["offset"][:10]) == list(first.cols["offset"])


def test_a_replaced_file_is_indexed_again(run, tmp_path):
    lines = _lines(run)
    d = _copy(run, tmp_path / "r", lines)
    m = RunStore.open(d).manifest
    first = build(d, m)
    new = d / "new.jsonl"
    new.write_bytes(b"".join(reversed(lines)))  # --resume rewrites to a temporary file and renames it
    os.replace(new, d / TRAJECTORIES)
    second = build(d, m, first)
    row = second.find(first.tasks[0], 0)
    rec = second.read(row)
    assert rec["task_id"] == first.tasks[0] and rec["sample"] == 0
    assert int(second.cols["line"][row]) != int(first.cols["line"][first.find(first.tasks[0], 0)])


def test_damaged_repeated_and_foreign_lines_are_set_apart_not_fatal(run, tmp_path):
    lines = _lines(run)
    foreign = json.loads(lines[0])
    foreign["task_id"] = "not-a-task-of-this-run"
    bad_type = json.loads(lines[1])
    bad_type["score"] = "high"
    d = _copy(run, tmp_path / "r", [lines[0], b"{not json\n", lines[0], encode_record(foreign),
                                    json.dumps(bad_type).encode() + b"\n", b"\n", *lines[2:]])
    ix = build(d, RunStore.open(d).manifest)
    assert len(ix) == 14  # line 1 and 3..15; the damaged second record is not one
    assert ix.left_out == {"repeated": 1, "foreign": 1}
    assert [n for n, _ in ix.damaged] == [2, 5] and "score" in ix.damaged[1][1]


def test_the_index_cache_lives_outside_the_run_and_survives_a_restart(run, tmp_path, monkeypatch):
    before = sorted(os.listdir(run))
    cache = IndexCache(tmp_path / "cache")
    m = RunStore.open(run).manifest
    ix, _ = cache.get(run, m, wait_s=None)
    assert ix is not None and len(ix) == 15
    assert sorted(os.listdir(run)) == before and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    monkeypatch.setattr(vi, "build", lambda *a, **k: pytest.fail("rebuilt an index the cache holds"))
    again = IndexCache(tmp_path / "cache").peek(run)  # a new server process
    assert again is not None and list(again.cols["score"]) == pytest.approx(list(ix.cols["score"]), nan_ok=True)


def test_a_slow_index_build_reports_its_progress_instead_of_blocking(run, tmp_path, monkeypatch):
    import threading

    gate = threading.Event()
    real = vi.build

    def slow(run_dir, manifest, prev=None, progress=None):
        progress(123)
        gate.wait(10)
        return real(run_dir, manifest, prev, progress)

    monkeypatch.setattr(vi, "build", slow)
    cache = IndexCache(None)
    m = RunStore.open(run).manifest
    assert cache.get(run, m, wait_s=0.05) == (None, 123)
    gate.set()
    ix, _ = cache.get(run, m, wait_s=None)
    assert ix is not None and len(ix) == 15


def test_filters_and_sorts_of_the_run_page(run):
    ix = build(run, RunStore.open(run).manifest)
    failed = select_rows(ix, {"only": "failed"})
    assert all(ix.cols["passed"][r] == 0 for r in failed)
    by_score = select_rows(ix, {"sort": "-score"})
    scores = [ix.cols["score"][r] for r in by_score]
    assert scores == sorted(scores, reverse=True)
    name, values = next(iter(ix.knobs.items()))
    picked = select_rows(ix, {"knob": f"{name}={values[0]}"})
    assert len(picked) and all(ix.knobs[name][ix.knob(name)[r]] == values[0] for r in picked)
    assert len(select_rows(ix, {"knob": "no-such-knob=1"})) == 0
    assert len(select_rows(ix, {"task": "no-such-task"})) == 0


def test_a_knob_with_too_many_values_is_not_a_filter(run, tmp_path):
    lines = []
    for i, raw in enumerate(_lines(run)):
        rec = json.loads(raw)
        rec["metadata"] = {**rec.get("metadata", {}), "uid": f"u{i}"}
        lines.append(encode_record(rec))
    monkey = vi.MAX_KNOB_VALUES
    vi.MAX_KNOB_VALUES = 4
    try:
        ix = build(_copy(run, tmp_path / "r", lines), RunStore.open(run).manifest)
    finally:
        vi.MAX_KNOB_VALUES = monkey
    assert "uid" not in ix.knobs and all(len(col) == len(ix.tasks) for col in ix.knob_cols.values())


def test_served_folders_refuse_every_way_out(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (root / "out").symlink_to(tmp_path)
    (root / "loop").symlink_to(root / "loop")
    roots = Roots([root])
    assert roots.resolve("0/sub") == (root / "sub").resolve()
    assert roots.resolve("0/") == root.resolve()
    for ref in ("0/../secret", "0/sub/../../secret", "0//etc/passwd", "0/out/secret", "0/out", "1/sub", "x/sub",
                "-1/sub", "0/sub\x00", "0/loop/x", "0/C:/x", "0/\\etc"):
        with pytest.raises(Outside):
            roots.resolve(ref)


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_any_text_is_shown_as_exactly_that_text(text):
    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.tags: list[str] = []
            self.data: list[str] = []

        def handle_starttag(self, name, attrs):  # noqa: ANN001
            self.tags.append(name)

        def handle_data(self, data):  # noqa: ANN001
            self.data.append(data)

    p = Collect()
    p.feed(tag("pre", text, title=text))
    p.close()
    assert p.tags == ["pre"] and "".join(p.data) == text


def test_the_command_refuses_a_network_address_a_missing_folder_and_a_busy_port(tmp_path, capsys):
    assert main(["view", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["view", str(tmp_path / "f")]) == 2
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        assert main(["view", str(tmp_path), "--port", str(busy.getsockname()[1])]) == 2
        assert "in use" in capsys.readouterr().err
    finally:
        busy.close()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=12)
_fields = st.fixed_dictionaries({}, optional={
    "messages": st.lists(st.dictionaries(st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "name"]),
                                         _json, max_size=5), max_size=4) | _json,
    "breakdown": st.dictionaries(st.sampled_from(["collateral", "allowed", "requirements", "x"]), _json) | _json,
    "world_diff": st.lists(st.dictionaries(st.sampled_from(["op", "table", "key", "field", "before", "after"]), _json),
                           max_size=3) | _json,
    "timings": _json, "usage": _json, "turn_usage": _json, "policy_info": _json, "metadata": _json,
    "explanation": _json, "error": _json, "outcome": st.sampled_from(["completed", "env_error", "weird"]),
})


@settings(max_examples=50, deadline=None)
@given(_fields)
def test_the_trajectory_parts_render_whatever_a_damaged_record_holds(fields):
    from envfoundry.core.sanitize import printable
    from envfoundry.viewer import pages_traj as pt

    rec = printable({"task_id": "t", "sample": 0, "score": 0.5, "passed": False, **fields})
    for part in (pt.conversation(rec.get("messages")), pt._grader(rec), pt._world_diff(rec), pt._usage(rec)):
        assert isinstance(part, str)


def test_a_record_the_index_can_use_but_the_schema_cannot_is_shown_with_a_note(run, tmp_path):
    from envfoundry.viewer.catalog import Catalog
    from envfoundry.viewer.pages_traj import trajectory_page

    lines = _lines(run)
    rec = json.loads(lines[0])
    rec["messages"] = [{"role": "assistant", "content": 5, "tool_calls": "not a list"}, "not a message"]
    d = _copy(run, tmp_path / "r", [encode_record(rec), *lines[1:]])
    cat = Catalog(Roots([tmp_path]), IndexCache(None))
    html, status = trajectory_page(cat, "0/r", {"task": rec["task_id"], "sample": str(rec["sample"])})
    assert status == 200 and 'id="damaged"' in html and "line 1 is damaged" in html and "not a message" in html
    with pytest.raises(Outside):
        trajectory_page(cat, "0/r", {"task": rec["task_id"], "sample": "99"})
    assert sorted(os.listdir(d)) == ["manifest.json", TRAJECTORIES]


def test_the_list_shows_damaged_and_newer_runs_as_such_and_links_out_are_refused(run, tmp_path):
    from envfoundry.viewer.catalog import Catalog
    from envfoundry.viewer.pages_runs import run_page, runs_page

    good = _copy(run, tmp_path / "good", _lines(run))
    newer = _copy(run, tmp_path / "newer", _lines(run))
    m = json.loads((run / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**m, "schema_version": 99}))
    bad = _copy(run, tmp_path / "bad", _lines(run))
    (bad / "manifest.json").write_text(json.dumps({**m, "samples": "three"}))
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "manifest.json").write_text('{"name": "a web app", "icons": []}')  # not a run
    leak = _copy(run, tmp_path / "leak", [])
    (leak / TRAJECTORIES).unlink()
    (leak / TRAJECTORIES).symlink_to(good / TRAJECTORIES)  # inside: fine
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / TRAJECTORIES).write_bytes(b"".join(_lines(run)))
    away = _copy(run, tmp_path / "away", [])
    (away / TRAJECTORIES).unlink()
    (away / TRAJECTORIES).symlink_to(outside / TRAJECTORIES)
    cat = Catalog(Roots([tmp_path]), IndexCache(None))
    html = runs_page(cat, {})
    assert html.count('class="run"') == 3  # good, leak, away: the two broken ones are rows with their error
    assert "schema version 99" in html and "samples" in html and "a web app" not in html
    assert run_page(cat, "0/leak", {})[1] == 200
    with pytest.raises(Outside):
        run_page(cat, "0/away", {})


def test_compare_matches_tasks_by_position_when_a_new_version_changed_their_ids(run, tmp_path):
    from envfoundry.viewer.catalog import Catalog
    from envfoundry.viewer.pages_runs import compare_page

    a = _copy(run, tmp_path / "v1", _lines(run))
    m = json.loads((run / "manifest.json").read_text())
    renamed = {t: f"v2-{t}" for t in m["task_ids"]}
    lines = []
    for raw in _lines(run):
        rec = json.loads(raw)
        rec.update(task_id=renamed[rec["task_id"]], score=1.0, passed=True, outcome="completed")
        lines.append(encode_record(rec))
    b = _copy(run, tmp_path / "v2", lines)
    (b / "manifest.json").write_text(json.dumps({**m, "task_ids": list(renamed.values()), "env_version": "2.0"}))
    cat = Catalog(Roots([tmp_path]), IndexCache(None))
    html, _ = compare_page(cat, ["0/v1", "0/v2"])
    assert "5 tasks matched by position in the task list" in html
    passes: dict[str, int] = {}
    for raw in _lines(a):
        rec = json.loads(raw)
        passes[rec["task_id"]] = passes.get(rec["task_id"], 0) + rec["passed"]
    flips = sum(1 for t in m["task_ids"] if passes[t] / 3 < 0.5)  # B passes everything
    assert flips and html.count("now passes") == flips and "now fails" not in html


def test_the_command_serves_on_loopback_and_stops_on_ctrl_c(run):
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    p = subprocess.Popen([sys.executable, "-m", "envfoundry", "view", str(run.parent), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "COLUMNS": "300"})
    try:
        line = p.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(url.group(0), timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.1)
        assert "run" in body and 'id="runs"' in body
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    assert p.returncode in (0, 130)


_audit = st.fixed_dictionaries({}, optional={
    "findings": st.lists(st.dictionaries(st.sampled_from(["kind", "source", "name", "message", "count", "example"]),
                                         _json, max_size=6), max_size=3) | _json,
    "probes": st.lists(st.dictionaries(st.sampled_from(["name", "run", "verdict", "exploit_rate", "n"]), _json),
                       max_size=3) | _json,
    "baseline": _json, "fail_on": _json, "ok": _json, "notes": _json, "mutations": _json, "env": _json,
    "mutation_kill_rate": _json,
})
_calibration = st.fixed_dictionaries({}, optional={
    "knobs": st.dictionaries(st.text(max_size=5), st.lists(st.dictionaries(
        st.sampled_from(["value", "pass_rate", "ci_lo", "ci_hi", "tasks"]), _json), max_size=3)) | _json,
    "plots": _json, "verdicts": _json, "band": _json, "tasks": _json, "mean_pass_rate": _json,
})


@settings(max_examples=40, deadline=None)
@given(_audit, _calibration, _json)
def test_quality_pages_show_damaged_results_without_breaking(audit, calibration, checks):
    import tempfile

    from envfoundry.core.errors import EnvfoundryError
    from envfoundry.viewer import pages_quality as pq
    from envfoundry.viewer.catalog import Catalog

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "a").mkdir()
        (root / "a" / "audit.json").write_text(json.dumps(audit))
        (root / "c").mkdir()
        (root / "c" / "calibration.json").write_text(json.dumps(calibration))
        (root / "c" / "difficulty.jsonl").write_text(json.dumps(checks) + "\n{\n")
        (root / "check.json").write_text(json.dumps({"env": "x", "checks": checks}))
        cat = Catalog(Roots([root]), IndexCache(None))
        for render, ref in ((pq.audit_page, "0/a"), (pq.calibration_page, "0/c"), (pq.check_page, "0/check.json")):
            try:
                html, status = render(cat, ref)
            except (ValueError, EnvfoundryError, Outside):  # shown as "cannot show this" (422) or 404
                continue
            assert status == 200 and html.startswith("<!doctype html>")
        assert "<!doctype html>" in pq.quality_page(cat)
