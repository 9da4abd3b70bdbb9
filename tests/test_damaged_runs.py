"""Damaged run files (issue 18): every reader (show, export, resume, the library) treats a bad line
or field as damage naming FILE:LINE with exit 2, never a traceback; export writes exactly one row
per (task, sample) of the run's own tasks; resume sets foreign, repeated and damaged lines aside in
``set_aside.jsonl`` (nothing is lost) and finishes the run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import envfoundry
from envfoundry.cli import main
from envfoundry.rollout.store import SET_ASIDE, DamagedRunError, RunStore
from tests.conftest import cli as cli_process


@pytest.fixture(autouse=True)
def _capture(capsys):  # noqa: ANN001, ANN202
    global _capsys
    _capsys = capsys


def cli(*args: str) -> subprocess.CompletedProcess:
    """The command line in this process (the real ``main`` and its exit codes; faster than a
    subprocess); one test per kind of damage also runs it in a subprocess."""
    _capsys.readouterr()
    code = main(list(args))
    out, err = _capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)

N = 6  # tasks x samples of the run every test damages


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "trajectories.jsonl").read_text().splitlines() if x]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:random", out=out, limit=3, samples=2, seed=1)
    return out


def _lines(run: Path) -> list[bytes]:
    return (run / "trajectories.jsonl").read_bytes().splitlines(keepends=True)


def _write(run: Path, lines: list[bytes]) -> None:
    (run / "trajectories.jsonl").write_bytes(b"".join(lines))


def _damage(r, where: str) -> None:  # noqa: ANN001
    err = " ".join(r.stderr.split())
    assert r.returncode == 2, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    assert where in err and "(damaged?)" in err and "Traceback" not in r.stderr, err


# ------------------------------------------------------------------------------------ damaged lines
@pytest.mark.parametrize(("bad", "why"), [
    (b'{"task_id": "\xff\xfe", "sample": 0, "outcome": "completed"}\n', "not valid JSON"),  # not UTF-8
    (b"\x00\x01garbage\n", "not valid JSON"),
    (b"[" * 5000 + b"\n", "not valid JSON"),  # deeper than any parser follows
    (b'{"task_id": "t", "sample": 1e23, "outcome": "completed"}\n', "sample is not an integer"),
    (b'{"task_id": "t", "sample": 0, "outcome": "completed", "score": "high", "passed": true}\n', "numeric score"),
    (b'{"task_id": "t", "sample": 0, "outcome": "policy_error", "messages": "hello"}\n', "messages is not a list"),
    (b'{"task_id": "t", "sample": 0, "outcome": "policy_error", "messages": [{"content": "x"}]}\n',
     "messages.0.role"),
    (b'{"task_id": "t", "sample": 0, "outcome": "policy_error", "error": 42}\n', "error is not a string"),
    (b'{"task_id": "t", "sample": 0, "outcome": "policy_error", "seed": null}\n', "seed is not an integer"),
    (b'{"task_id": "t", "sample": 0, "outcome": "policy_error", "world_diff": [{"op": "update"}]}\n',
     "world_diff.0 is not a change"),
    (b'["a", "list"]\n', "not a record"),
])
def test_a_damaged_line_is_named_by_every_reader_and_set_aside_by_resume(run: Path, bad: bytes, why: str) -> None:
    lines = _lines(run)
    _write(run, [lines[0], lines[1], bad, *lines[2:5]])  # the sixth record is missing: resume runs it
    where = f"{run / 'trajectories.jsonl'}:3"
    r = cli("show", str(run))
    _damage(r, where)
    assert why in " ".join(r.stderr.split()) and "--resume` moves the line to set_aside.jsonl" in " ".join(
        r.stderr.split())
    for fmt in ("x.parquet", "x.jsonl"):
        _damage(cli("export", str(run), str(run.parent / fmt)), where)
        assert not (run.parent / fmt).exists()
    _damage(cli("export", str(run), str(run.parent / "v.jsonl"), "--format", "verl"), where)
    with pytest.raises(DamagedRunError, match="trajectories.jsonl:3"):
        list(RunStore.open(run).records())
    r = cli("run", "--out", str(run), "--resume", "-q")
    assert r.returncode == 0, r.stderr
    recs = _records(run)
    assert len(recs) == N == len({(x["task_id"], x["sample"]) for x in recs})
    (aside,) = [json.loads(x) for x in (run / SET_ASIDE).read_text().splitlines()]
    assert aside["line"] == 3 and aside["file"] == "trajectories.jsonl" and why in aside["why"]
    assert aside["text"] == bad.rstrip(b"\n").decode("utf-8", "backslashreplace")  # kept, escaped
    assert cli("show", str(run)).returncode == 0
    r = cli("export", str(run), str(run.parent / "ok.jsonl"))
    assert r.returncode == 0 and f"wrote {N} rows" in r.stdout


def test_damage_in_a_subprocess_is_one_line_and_exit_2(run: Path) -> None:
    lines = _lines(run)
    _write(run, [lines[0], b"\xff\xfe not text\n", *lines[1:]])
    for args in (["show", str(run)], ["export", str(run), str(run.parent / "x.parquet")]):
        r = cli_process(*args)
        _damage(r, f"{run / 'trajectories.jsonl'}:2")
        assert r.stderr.count("error:") == 1
    assert cli_process("run", "--out", str(run), "--resume", "-q").returncode == 0


def test_a_torn_last_line_is_not_damage(run: Path) -> None:
    lines = _lines(run)
    _write(run, [*lines[:4], b'{"task_id": "torn'])  # a killed (or still running) process
    r = cli("show", str(run))
    assert r.returncode == 0 and "4 of 6 rollouts are stored" in " ".join(r.stderr.split()), r.stderr
    r = cli("export", str(run), str(run.parent / "x.jsonl"))
    assert r.returncode == 0 and "wrote 4 rows" in r.stdout
    assert cli("run", "--out", str(run), "--resume", "-q").returncode == 0
    assert len(_records(run)) == N and not (run / SET_ASIDE).exists()  # dropped and run again, not set aside


def test_a_field_only_the_display_reads_is_damage_too(run: Path) -> None:
    """A grader's breakdown is the grader's own shape: only the display finds it damaged; the
    message names the line and says to repair it (a resume keeps the record)."""
    recs = _records(run)
    recs[4]["breakdown"] = {"x": {"breakdown": {"requirements": [1], "collateral": 2}}}
    (run / "trajectories.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
    assert cli("show", str(run)).returncode == 0  # the table does not read it
    r = cli("show", str(run), "--task", recs[4]["task_id"])
    _damage(r, f"{run / 'trajectories.jsonl'}:5")
    assert "repair or remove that line" in " ".join(r.stderr.split())


# ------------------------------------------------------------------------------------ foreign and repeated records
def test_export_writes_one_row_per_own_rollout_and_resume_sets_the_rest_aside(run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    envfoundry.evaluate("math", model="scripted:random", out=other, limit=2, samples=1, split="train")
    lines = _lines(run)
    foreign = _lines(other)
    shifted = json.loads(lines[0])
    shifted["sample"] = 7  # a sample index the run does not have
    _write(run, [*lines, *foreign, lines[0], lines[3], json.dumps(shifted).encode() + b"\n"])
    for fmt in ("x.parquet", "x.jsonl", "t.jsonl"):
        extra = ["--format", "trl"] if fmt.startswith("t.") else []
        r = cli("export", str(run), str(tmp_path / fmt), *extra)
        assert r.returncode == 0, r.stderr
        err = " ".join(r.stderr.split())
        assert f"wrote {N} rows" in r.stdout and "3 record(s) of tasks or samples that are not the run's" in err
        assert "2 repeated record(s)" in err and "set_aside.jsonl" in err
    rows = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert sorted((x["task_id"], x["sample"]) for x in rows) == sorted(
        (x["task_id"], x["sample"]) for x in map(json.loads, lines))
    r = cli("show", str(run))
    assert r.returncode == 0 and "left out" in r.stderr and "of 6 rollouts" not in r.stderr
    r = cli("run", "--out", str(run), "--resume", "-q")
    assert r.returncode == 0, r.stderr
    assert _lines(run) == lines  # exactly the run's own records stay
    aside = [json.loads(x) for x in (run / SET_ASIDE).read_text().splitlines()]
    assert [a["line"] for a in aside] == [7, 8, 9, 10, 11]
    assert sum("not the run's" in a["why"] for a in aside) == 3 and sum("repeated" in a["why"] for a in aside) == 2
    assert json.loads(aside[0]["text"]) == json.loads(foreign[0])  # set aside whole: nothing is lost
    assert json.loads((run / "summary.json").read_text())["complete"]
    r = cli("export", str(run), str(tmp_path / "y.jsonl"))
    assert r.returncode == 0 and "left out" not in r.stderr


# ------------------------------------------------------------------------------------ the manifest and the summary
@pytest.mark.parametrize(("field", "value", "says"), [
    ("samples", 0, "samples: Input should be greater than or equal to 1"),
    ("samples", -3, "samples: Input should be greater than or equal to 1"),
    ("timeout_s", -1.5, "timeout_s: Input should be greater than 0"),
    ("timeout_s", float("nan"), "timeout_s"),
    ("concurrency", 0, "concurrency: Input should be greater than or equal to 1"),
    ("max_turns", 0, "max_turns: Input should be greater than or equal to 1"),
    ("sample_offset", -1, "sample_offset: Input should be greater than or equal to 0"),
    ("task_ids", [], "task_ids: List should have at least 1 item"),
    ("task_ids", "abc", "task_ids: Input should be a valid list"),
])
def test_a_damaged_manifest_is_named_with_its_line_by_every_reader(run: Path, field: str, value, says: str) -> None:
    m = json.loads((run / "manifest.json").read_text())
    m[field] = value
    text = json.dumps(m, indent=2)
    (run / "manifest.json").write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.strip().startswith(f'"{field}":'))
    for args in (["show", str(run)], ["export", str(run), str(run.parent / "x.jsonl")],
                 ["run", "--out", str(run), "--resume", "-q"]):
        r = cli(*args)
        _damage(r, f"{run / 'manifest.json'}:{line} (damaged?): {says}")


@pytest.mark.parametrize(("text", "line"), [
    (b'{\n  "env": "math",\n  "samples": 2,,\n}', 3),
    (b'{\n  "env": "m\xe9th"\n}', 2),  # Latin-1, not UTF-8
    (b"", 1),
])
def test_a_manifest_that_is_not_json_is_named_with_its_line(run: Path, text: bytes, line: int) -> None:
    (run / "manifest.json").write_bytes(text)
    _damage(cli("show", str(run)), f"{run / 'manifest.json'}:{line}")
    _damage(cli("run", "--out", str(run), "--resume", "-q"), f"{run / 'manifest.json'}:{line}")


@pytest.mark.parametrize("summary", [b"{not json", b"[1, 2]", b'{"n_trajectories": "six"}', b"\xff"])
def test_a_damaged_summary_is_damage_for_its_readers_and_show_does_not_need_it(run: Path, summary: bytes) -> None:
    (run / "summary.json").write_bytes(summary)
    with pytest.raises(DamagedRunError, match="summary.json"):
        envfoundry.rollout.run.Run.open(run)
    r = cli("show", str(run))  # show computes the summary from the records
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = cli("run", "--out", str(run), "--resume", "-q")  # and a resume writes a new one
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["n_trajectories"] == N
