"""One rule for exit codes in every command (issue 18): 1 for the machine (a full disk, a read-only
file system), 2 for the user's input; one line on stderr, never a traceback, nothing half-made.

The machine's faults are real: a 64 KiB tmpfs filled to the brim, and a read-only bind mount.
Both need root (and a kernel that lets this process mount); elsewhere the tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from envfoundry.testing import StubServer
from tests.conftest import cli

FULL = "No space left on device"
READ_ONLY = "Read-only file system"


def _mount(*args: str) -> str | None:
    """None when ``mount ARGS`` worked, else why not."""
    if os.geteuid() != 0:
        return "mounting needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if r.returncode == 0 else f"mount {' '.join(args)} failed: {r.stderr.strip()}"


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def _fill(d: Path) -> None:
    """Use up every byte of the file system ``d`` is on."""
    with contextlib.suppress(OSError), open(d / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 64 KiB tmpfs that is already full."""
    d = tmp_path / "full"
    d.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d))
    if why:
        pytest.skip(f"no small tmpfs for a full disk: {why}")
    try:
        _fill(d)
        yield d
    finally:
        _umount(d)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(source, view): ``view`` shows ``source`` read-only once :func:`_seal` is called."""
    src, view = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    view.mkdir()
    yield src, view
    _umount(view)


def _seal(src: Path, view: Path) -> Path:
    why = _mount("--bind", str(src), str(view)) or _mount("-o", "remount,bind,ro", str(view))
    if why:
        _umount(view)
        pytest.skip(f"no read-only bind mount: {why}")
    assert not os.access(view, os.W_OK) or _cannot_write(view)
    return view


def _cannot_write(d: Path) -> bool:
    try:
        (d / ".probe").write_text("x")
    except OSError:
        return True
    return False


def _machine_fault(r: subprocess.CompletedProcess, why: str) -> None:
    """Exit 1, the fault named in one error line, no traceback."""
    err = " ".join(r.stderr.split())
    assert r.returncode == 1, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert why in err and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.count("error:") == 1, r.stderr[-3000:]


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    """A model server whose replies a rubric judge reads as all-yes verdicts."""
    srv = StubServer(reply="\n".join(f"{i}. yes" for i in range(1, 41)), keep_requests=False)
    with srv.run_in_thread() as url:
        yield url


def _agree(save: Path, url: str) -> list[str]:
    return ["agree", "--labels", "support", "--judge", "support", "--model", "openai:stub", "--base-url", url,
            "--limit", "2", "--repeats", "1", "--adversarial", "0", "--pairs", "0", "--boot", "50",
            "--save", str(save)]


def _small_run(out: Path) -> None:
    r = cli("run", "math", "--model", "scripted:random", "--limit", "20", "--samples", "2", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- a full disk
def test_a_new_run_on_a_full_disk_exits_1_and_leaves_no_run_directory(full: Path) -> None:
    r = cli("run", "math", "--model", "scripted:oracle", "--limit", "2", "--out", str(full / "a" / "run"), "-q")
    _machine_fault(r, FULL)
    assert not (full / "a").exists()  # neither the run directory nor the parent it made
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_a_run_that_fills_the_disk_exits_1_and_resumes_exactly_after_room_is_made(full: Path) -> None:
    (full / "filler").write_bytes(b"\0" * 8192)  # some room: the run starts, then the disk fills
    out = full / "run"
    r = cli("run", "math", "--model", "scripted:oracle", "--limit", "200", "--samples", "2", "--out", str(out), "-q")
    _machine_fault(r, FULL)
    assert "--resume" in r.stderr and (out / "manifest.json").is_file()
    (full / "filler").unlink()
    shutil.copytree(out, full.parent / "moved")  # room for all of it: on the disk the test runs on
    r = cli("run", "--out", str(full.parent / "moved"), "--resume", "-q")
    assert r.returncode == 0, r.stderr
    lines = (full.parent / "moved" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 400 == len({(json.loads(x)["task_id"], json.loads(x)["sample"]) for x in lines})


@pytest.mark.parametrize("fmt", ["x.parquet", "x.jsonl", "trl.jsonl"])
def test_export_to_a_full_disk_exits_1_and_leaves_no_file(tmp_path: Path, full: Path, fmt: str) -> None:
    _small_run(tmp_path / "run")
    extra = ["--format", "trl"] if fmt.startswith("trl") else []
    r = cli("export", str(tmp_path / "run"), str(full / fmt), *extra)
    _machine_fault(r, FULL)
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_calibrate_audit_and_agree_on_a_full_disk_exit_1(full: Path, judge_url: str) -> None:
    r = cli("calibrate", "math", "--model", "scripted:random", "--limit", "4", "--samples", "2",
            "--out", str(full / "cal"))
    _machine_fault(r, FULL)
    r = cli("audit", "math", "--limit", "2", "--out", str(full / "aud"))
    _machine_fault(r, FULL)
    r = cli(*_agree(full / "scores.jsonl", judge_url))
    _machine_fault(r, FULL)
    assert not (full / "scores.jsonl").exists() and not list(full.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- read-only
def test_every_command_on_a_read_only_folder_exits_1(tmp_path: Path, read_only: tuple[Path, Path],
                                                     judge_url: str) -> None:
    src, view = read_only
    _small_run(src / "done")
    _small_run(src / "partial")
    lines = (src / "partial" / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (src / "partial" / "trajectories.jsonl").write_text("".join(lines[:10]))
    ro = _seal(src, view)
    for args in (
        ["run", "math", "--model", "scripted:oracle", "--limit", "2", "--out", str(ro / "new"), "-q"],
        ["run", "--out", str(ro / "partial"), "--resume", "-q"],
        ["run", "--out", str(ro / "done"), "--resume", "-q"],  # nothing to run; the summary cannot be written
        ["export", str(ro / "done"), str(ro / "x.parquet")],
        ["export", str(ro / "done"), str(ro / "x.jsonl"), "--format", "verl"],
        ["calibrate", "math", "--model", "scripted:random", "--limit", "2", "--samples", "2", "--out", str(ro / "c")],
        ["audit", "math", "--limit", "2", "--out", str(ro / "a")],
        _agree(ro / "scores.jsonl", judge_url),
    ):
        _machine_fault(cli(*args), READ_ONLY)
    # reading needs no writing
    assert cli("show", str(ro / "done")).returncode == 0
    r = cli("export", str(ro / "done"), str(tmp_path / "y.jsonl"))
    assert r.returncode == 0 and "wrote 40 rows" in r.stdout, r.stderr


# ---------------------------------------------------------------------------------------------- the user's input
def test_a_path_that_cannot_be_a_folder_is_the_users_input_in_every_command(tmp_path: Path, judge_url: str) -> None:
    _small_run(tmp_path / "run")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (
        ["run", "math", "--model", "scripted:oracle", "--limit", "1", "--out", str(afile / "run"), "-q"],
        ["export", str(tmp_path / "run"), str(afile / "x.parquet")],
        ["calibrate", "math", "--model", "scripted:random", "--limit", "2", "--out", str(afile / "c")],
        ["audit", "math", "--limit", "2", "--out", str(afile / "a")],
        _agree(afile / "scores.jsonl", judge_url),
    ):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout[-1000:], r.stderr[-2000:])
        assert "Traceback" not in r.stderr and "error" in r.stderr.lower(), r.stderr
    assert afile.read_text() == "x"
