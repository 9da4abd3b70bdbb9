"""One vocabulary across commands: the same flag for the same thing, every numeric option range-checked
before any work, old names hidden aliases with a note, and default output folders that never collide."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

from envfoundry.cli import app, main
from envfoundry.cli.vocabulary import RANGES, RENAMED

from .conftest import ROOT, cli

COUNTER = str(ROOT / "examples" / "counter_env.py") + ":make_env"

COMMANDS = ("run", "check", "audit", "calibrate", "train", "agree", "show", "export", "list")

#: what each shared option means: every command that has the thing calls it by this one name
SHARED = {
    "--model": "the policy or model", "--base-url": "API root", "--api-key-env": "key variable",
    "--split": "task split", "--limit": "number of tasks", "--samples": "rollouts per task (a group)",
    "--seed": "seed", "--task-seed": "task seed", "--concurrency": "in flight", "--workers": "processes",
    "--timeout": "seconds per rollout", "--max-turns": "turn limit", "--temperature": "sampling temperature",
    "--top-p": "nucleus", "--max-tokens": "tokens per model turn", "--out": "output folder",
    "--resume": "continue", "--force": "replace", "--quiet": "no progress", "--json": "machine-readable",
    "--env": "environment", "--env-arg": "factory argument", "--slots": "llama.cpp servers",
}
#: names that other tools use for the shared things above: none of our commands may show one
FORBIDDEN = {"--tasks", "--group-size", "--eval-tasks", "--max-turn-tokens", "--n", "--num-samples", "--output",
             "--output-dir", "--num-generations", "--n-tasks", "--k", "--epochs-tasks", "--log-dir"}


def _commands() -> dict[str, Any]:
    """The commands as typer builds them (its own click: duck-typed, not isinstance)."""
    group = typer.main.get_command(app)
    return {name: group.commands[name] for name in COMMANDS}


def _options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "option"]


def _visible(cmd: Any) -> set[str]:
    return {o for p in _options(cmd) if not p.hidden for o in p.opts if o.startswith("--")}


def _numeric(p: Any) -> bool:
    return getattr(getattr(p, "type_descriptor", None), "annotation", None) in (int, float)


def _help_options(name: str) -> set[str]:
    r = cli(name, "--help")
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", r.stdout))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_commands_help_uses_the_shared_names(name):
    shown = _help_options(name)
    assert not shown & FORBIDDEN, f"{name} --help shows {sorted(shown & FORBIDDEN)}"
    assert not shown & set(RENAMED), f"{name} --help shows an old name: {sorted(shown & set(RENAMED))}"
    declared = _visible(_commands()[name])
    assert declared <= shown | {"--help"}  # the walk of --help sees every visible option


def test_the_shared_things_have_one_name_in_every_command():
    cmds = _commands()
    seen = {name: _visible(c) for name, c in cmds.items()}
    # the commands that run rollouts all share these
    for name in ("run", "calibrate", "audit", "check"):
        assert {"--limit", "--samples", "--seed", "--split", "--env", "--env-arg"} <= seen[name], name
    for name in ("run", "calibrate", "audit", "train"):
        assert {"--out", "--resume", "--force"} <= seen[name], name
    for name in ("run", "calibrate", "train", "agree"):
        assert "--model" in seen[name], name
    for name in ("run", "calibrate"):
        assert {"--base-url", "--api-key-env", "--slots", "--temperature", "--top-p", "--max-tokens",
                "--concurrency", "--workers", "--timeout", "--max-turns", "--task-seed", "--quiet"} <= seen[name]
    assert {"--samples", "--max-tokens", "--temperature", "--seed", "--threads"} <= seen["train"]
    # every numeric option has a documented range, shown in its help
    for name, cmd in cmds.items():
        for p in _options(cmd):
            if not p.hidden and _numeric(p):
                flag = p.opts[0]
                assert flag in RANGES or flag == "--threads", f"{name} {flag} has no documented range"
                assert "range" in (p.help or ""), f"{name} {flag}: the help does not state the range"


@pytest.mark.parametrize("old,new,command,value", [
    ("--tasks", "--limit", "check", "1"), ("--group-size", "--samples", "train", "4"),
    ("--eval-tasks", "--eval-limit", "train", "0"), ("--max-turn-tokens", "--max-tokens", "train", "8"),
])
def test_old_names_are_hidden_aliases_with_a_note(old, new, command, value):
    cmd = _commands()[command]
    params = {o: p for p in cmd.params for o in p.opts}
    assert old in params and params[old].hidden and new in params and not params[new].hidden
    if command == "check":
        r = cli("check", COUNTER, old, value, "--samples", "1")
        assert f"note: {old} is now {new}" in r.stderr
        assert cli("check", "math", old, "2", new, "3").returncode == 2  # given twice, differently


@pytest.mark.parametrize("args,flag", [
    (["run", "math", "--model", "scripted:noop", "--samples", "1000000000"], "--samples"),
    (["run", "math", "--model", "scripted:noop", "--samples", "0"], "--samples"),
    (["run", "math", "--model", "scripted:noop", "--timeout", "nan"], "--timeout"),
    (["run", "math", "--model", "scripted:noop", "--temperature", "inf"], "--temperature"),
    (["run", "math", "--model", "scripted:noop", "--model-seed", str(2**80)], "--model-seed"),
    (["run", "math", "--model", "scripted:noop", "--max-tokens", str(2**40)], "--max-tokens"),
    (["run", "math", "--model", "scripted:noop", "--top-p", "0"], "--top-p"),
    (["run", "math", "--model", "scripted:noop", "--concurrency", "0"], "--concurrency"),
    (["calibrate", "math", "--model", "scripted:noop", "--budget", "0"], "--budget"),
    (["audit", "math", "--limit", "-3"], "--limit"),
    (["train", "math", "--lr", "inf"], "--lr"),
    (["train", "math", "--beta", "inf"], "--beta"),
    (["train", "math", "--temperature", "nan"], "--temperature"),
    (["train", "math", "--threads", "100000"], "--threads"),
])
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, args, flag):
    r = cli(*args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert flag in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()


def test_run_needs_a_model_and_a_limit_the_split_can_give(tmp_path, capsys):
    assert main(["run", "math", "--limit", "2", "--out", str(tmp_path / "a"), "-q"]) == 2
    assert "run needs --model" in capsys.readouterr().err
    env = COUNTER
    assert main(["run", env, "--model", "scripted:oracle", "--limit", "20000", "--out", str(tmp_path / "b")]) == 2
    e = capsys.readouterr().err
    assert "--limit 20000 asks for more tasks than" in e and "leave --limit out" in e
    assert not (tmp_path / "b").exists()


def test_default_output_folders_never_collide_and_a_used_one_names_resume_and_force(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["run", "math", "--model", "scripted:oracle", "--limit", "2", "-q"]
    assert main(args) == 0 and main(args) == 0  # the same second: a -2 folder, not a refusal
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(re.fullmatch(r"math-\d{8}-\d{6}(-\d+)?", n) for n in runs)
    out = tmp_path / "runs" / runs[0]
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 2
    e = capsys.readouterr().err.replace("\n", " ")
    assert "--resume" in e and "--force" in e and "earlier `envfoundry run`" in e
    assert main([*args, "--out", str(out), "--force", "--samples", "3"]) == 0  # replaced
    assert json.loads((out / "manifest.json").read_text())["samples"] == 3
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    assert main([*args, "--out", str(other), "--force"]) == 2
    assert "replaces only an envfoundry output" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "precious"
    assert main([*args, "--out", str(out), "--force", "--resume"]) == 2


def test_audit_twice_gets_two_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    env = COUNTER
    args = ["audit", env, "--limit", "2", "--samples", "1", "--probes", "empty"]
    codes = [main(args), main(args)]
    made = sorted((tmp_path / "quality").glob("*/audit-*"))
    assert len(made) == 2 and codes[0] == codes[1], capsys.readouterr()
    assert "writing the audit in" in capsys.readouterr().err


def test_progress_says_what_it_counts_and_prints_lines_when_not_on_a_terminal():
    from envfoundry.display import RichProgress

    buf = io.StringIO()
    p = RichProgress(Console(file=buf, width=80), every_s=0.0)
    p.start(4, 1)
    for passed in (True, False):
        p.advance({"outcome": "completed", "passed": passed})
    p.advance({"outcome": "policy_error", "passed": None})
    p.stop()
    text = buf.getvalue()
    assert "rollouts: 1 of 4 done at the start" in text
    assert "rollouts: 4 of 4 done, passed 1 of 2 scored (50%), errors 1" in text
    assert "\x1b" not in text  # plain lines, no terminal codes


def test_plain_progress_lines_come_while_no_rollout_finishes():
    """A slow model: the log gets a line every few seconds even when no rollout has finished."""
    import time

    from envfoundry.display import RichProgress

    buf = io.StringIO()
    p = RichProgress(Console(file=buf, width=80), every_s=0.05)
    p.start(2, 0)
    time.sleep(0.4)  # nothing finishes
    p.stop()
    lines = [ln for ln in buf.getvalue().splitlines() if "0 of 2 done, passed none scored yet" in ln]
    assert len(lines) >= 3
    n = len(buf.getvalue())
    time.sleep(0.2)
    assert len(buf.getvalue()) == n  # stopped: no more lines


def test_summary_of_a_run_that_measured_nothing_says_so():
    from envfoundry.display import summary_table

    buf = io.StringIO()
    s = {"n_trajectories": 4, "n_scored": 0, "n_errors": 4, "error_causes": [["cannot connect: refused", 4]],
         "n_tasks": 2, "samples": 2, "pass_rate": None, "mean_score": None, "outcomes": {"policy_error": 4}}
    Console(file=buf, width=60).print(summary_table(s))
    text = buf.getvalue()
    assert "nothing: all 4 rollouts ended in errors" in text and "pass rate" not in text
    assert "4 x cannot connect: refused" in text.replace("\n", " ").replace("│", " ").replace("  ", " ") or \
        "cannot connect" in text


def test_tables_wrap_long_names_instead_of_cutting_them():
    from envfoundry.display import records_table

    buf = io.StringIO()
    long_id = "task-" + "x" * 70 + "-END"
    Console(file=buf, width=60).print(records_table([{"task_id": long_id, "sample": 0, "outcome": "completed",
                                                        "score": 1.0, "turns": 1, "explanation": "ok"}]))
    text = buf.getvalue()
    assert "…" not in text and "-END" in text and text.count("x") >= 70  # folded over lines, all of it


def _stub_server_down() -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_a_run_whose_rollouts_all_fail_exits_1_and_says_nothing_was_measured(tmp_path):
    url = _stub_server_down()
    out = tmp_path / "run"
    base = ["run", "math", "--model", "openai:m", "--base-url", url, "--limit", "2", "--samples", "2", "-q"]
    r = cli(*base, "--out", str(out), "--timeout", "30")
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.replace("\n", " ")
    assert "4 of 4 rollouts ended in errors" in err and "nothing was measured" in err
    assert "cannot connect" in err and f"envfoundry run --out {out} --resume" in err
    assert "nothing: all 4 rollouts ended in errors" in r.stdout.replace("\n", " ")
    # a tolerance that covers them: exit 0 (the errors are still counted and shown)
    r = cli(*base, "--out", str(tmp_path / "tolerant"), "--max-errors", "100%")
    assert r.returncode == 0, r.stderr
    assert cli(*base, "--out", str(tmp_path / "x"), "--max-errors", "lots").returncode == 2


def test_max_errors_counts_and_shares(tmp_path):
    """An environment whose grader fails on some tasks: the tolerance decides the exit code."""
    import envfoundry

    env = COUNTER
    run = envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "ok", limit=3)
    assert run.ok and run.failure is None and run.n_errors == 0
    url = _stub_server_down()
    opts = {"model": "openai:m", "model_options": {"base_url": url}, "limit": 3, "timeout_s": 30}
    run = envfoundry.evaluate(env, out=tmp_path / "a", **opts)
    assert not run.ok and run.n_errors == 3 and "3 of 3 rollouts ended in errors" in run.failure
    assert "nothing was measured" in run.failure
    assert envfoundry.evaluate(env, out=tmp_path / "b", max_errors=3, **opts).ok
    assert not envfoundry.evaluate(env, out=tmp_path / "c", max_errors=2, **opts).ok
    assert envfoundry.evaluate(env, out=tmp_path / "d", max_errors=1.0, **opts).ok
    with pytest.raises(envfoundry.UsageError if hasattr(envfoundry, "UsageError") else Exception, match="max.errors"):
        envfoundry.evaluate(env, out=tmp_path / "e", max_errors=-1, **opts)
    assert Path(tmp_path / "a" / "summary.json").is_file()


@pytest.mark.parametrize("text,value", [
    ("0", 0), (" 3 ", 3), ("+3", 3), ("5%", 0.05), ("0.5%", 0.005), ("0.05", 0.05), ("1.0", 1.0), ("100%", 1.0),
])
def test_max_errors_text_forms(text, value):
    from envfoundry.rollout.run import parse_max_errors

    got = parse_max_errors(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text,says", [
    ("-1", ">= 0, got '-1'"), ("150%", "from 0% to 100%, got '150%'"), ("3.0", "without a decimal point: 3"),
    ("1e3", "without a decimal point: 1000"), ("1.5", "from 0 to 1, got '1.5'"), ("nan%", "expects a count"),
    ("inf", "expects a count"), ("", "expects a count"), ("0x10", "expects a count"),
])
def test_max_errors_out_of_range_says_what_was_given(text, says):
    from envfoundry.core.errors import UsageError
    from envfoundry.rollout.run import parse_max_errors

    with pytest.raises(UsageError, match=re.escape(says)):
        parse_max_errors(text)


def test_a_share_of_max_errors_is_not_lost_to_rounding():
    """29% of 100 rollouts tolerates 29 (0.29 * 100 is 28.999999999999996 in floating point)."""
    import numpy as np

    from envfoundry.rollout.run import Run, check_max_errors

    def run(max_errors, n=100, errors=29):
        return Run(Path("r"), None, {"n_trajectories": n, "n_errors": errors}, max_errors=max_errors)  # type: ignore

    for pct in (7, 14, 28, 29, 55, 57, 58):
        assert run(pct / 100, errors=pct).tolerated == pct and run(pct / 100, errors=pct).ok
        assert not run(pct / 100, errors=pct + 1).ok
    assert run(np.float32(0.5), errors=50).tolerated == 50  # a numpy share is a share, not a count of 0
    assert check_max_errors(np.int64(3)) == 3 and run(np.int64(3), errors=3).ok
    spaced = Run(Path("my runs/x"), None, {"n_trajectories": 1, "n_errors": 1})  # type: ignore[arg-type]
    assert spaced.failure.endswith("--out 'my runs/x' --resume")  # a command that can be pasted
    # the resume command keeps the tolerance the run was judged by (it is not stored with the run)
    assert run(0.25, errors=30).failure.endswith("--resume --max-errors 25%")
    assert run(3, errors=30).failure.endswith("--resume --max-errors 3")


def test_force_replaces_only_real_envfoundry_outputs_and_keeps_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["run", "math", "--model", "scripted:oracle", "--limit", "2", "-q"]
    # a web project with a manifest.json of its own is not a run: never deleted
    web = tmp_path / "web"
    (web / "src").mkdir(parents=True)
    (web / "manifest.json").write_text('{"name": "app", "version": "1"}')
    (web / "src" / "main.js").write_text("precious")
    assert main([*args, "--out", str(web)]) == 2
    e = capsys.readouterr().err.replace("\n", " ")
    assert "not an envfoundry output" in e and "--resume" not in e
    assert main([*args, "--out", str(web), "--force"]) == 2
    assert (web / "src" / "main.js").read_text() == "precious"
    # a link to a run, and the current directory: emptied and reused, the link and the folder stay
    assert main([*args, "--out", "real"]) == 0
    (tmp_path / "link").symlink_to("real")
    assert main([*args, "--out", "link", "--force", "--samples", "2"]) == 0, capsys.readouterr().err
    assert (tmp_path / "link").is_symlink() and json.loads((tmp_path / "real" / "manifest.json").read_text())[
        "samples"] == 2
    monkeypatch.chdir(tmp_path / "real")
    assert main([*args, "--out", ".", "--force", "--samples", "3"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "real" / "manifest.json").read_text())["samples"] == 3
    # a folder that holds the current directory is not deleted under it
    (tmp_path / "real" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "real" / "sub")
    assert main([*args, "--out", "..", "--force"]) == 2
    assert "current directory" in capsys.readouterr().err and (tmp_path / "real" / "manifest.json").is_file()


def test_a_used_folder_is_named_for_what_it_holds(tmp_path, monkeypatch, capsys):
    """An audit's folder given to run: no --resume advice (run cannot resume an audit); an audit
    stopped before audit.json is still an audit, which --force may replace as the refusal says."""
    import shutil

    monkeypatch.chdir(tmp_path)
    audit = ["audit", COUNTER, "--limit", "2", "--samples", "1", "--probes", "empty", "--out", "aud"]
    main(audit)
    capsys.readouterr()
    assert main(["run", "math", "--model", "scripted:oracle", "--limit", "2", "--out", "aud"]) == 2
    e = capsys.readouterr().err.replace("\n", " ")
    assert "holds the output of `envfoundry audit`" in e and "--resume" not in e and "--force" in e
    shutil.copytree("aud", "stopped")
    (tmp_path / "stopped" / "audit.json").unlink()  # an audit killed before its report
    assert main([*audit[:-1], "stopped"]) == 2
    assert "earlier `envfoundry audit`" in capsys.readouterr().err.replace("\n", " ")
    assert main([*audit[:-1], "stopped", "--force"]) in (0, 1)
    assert (tmp_path / "stopped" / "audit.json").is_file()


def test_default_folders_are_claimed_at_once_and_removed_when_left_empty(tmp_path, monkeypatch, capsys):
    from envfoundry.cli.output import default_out

    monkeypatch.chdir(tmp_path)
    a, b = default_out("runs", "x"), default_out("runs", "x")  # two processes in the same second
    assert a != b and a.is_dir() and b.is_dir()
    # a command refused before any work leaves no empty timestamped folder (nor runs/) behind
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    assert main(["run", "math", "--model", "scripted:oracle", "--limit", "999999", "-q"]) == 2
    assert not (fresh / "runs").exists()
    assert main(["run", "math", "--model", "scripted:oracle", "--limit", "2", "-q"]) == 0
    assert len(list((fresh / "runs").iterdir())) == 1


def test_old_names_keep_the_new_names_range():
    r = cli("check", "math", "--tasks", "0")
    assert r.returncode == 2 and "--tasks must be >= 1" in r.stderr
    r = cli("train", "math", "--eval-tasks", "-1")
    assert r.returncode == 2 and "--eval-tasks must be >= 0" in r.stderr


def test_resume_continues_only_the_commands_own_output(tmp_path, monkeypatch, capsys):
    """An audit resumed into a calibration's or a project's folder would mix its files into them."""
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", COUNTER, "--model", "scripted:oracle", "--limit", "2", "--samples", "2", "--out", "cal",
                 "-q"]) == 0
    before = sorted(p.name for p in (tmp_path / "cal").iterdir())
    capsys.readouterr()
    audit = ["audit", COUNTER, "--limit", "2", "--samples", "1", "--probes", "empty", "--resume", "--out"]
    assert main([*audit, "cal"]) == 2
    assert "holds the output of `envfoundry calibrate`" in capsys.readouterr().err.replace("\n", " ")
    assert sorted(p.name for p in (tmp_path / "cal").iterdir()) == before
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    assert main([*audit, "project"]) == 2
    assert [p.name for p in (tmp_path / "project").iterdir()] == ["notes.txt"]


def test_the_progress_bar_keeps_its_count_whole_at_80_columns():
    """On a terminal of 80 columns the bar gives way; the count of rollouts is never cut."""
    from envfoundry.display import RichProgress

    buf = io.StringIO()
    p = RichProgress(Console(file=buf, width=80, force_terminal=True, color_system=None))
    p.start(20000, 5)
    for i in range(1300):
        p.advance({"outcome": "completed" if i % 50 else "env_error", "passed": i % 3 == 0})
    p.stop()
    last = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buf.getvalue()).replace("\r", "\n").strip().splitlines()[-1]
    assert "1305/20000" in last and "…" not in last, last
    assert re.search(r"passed \d+/1274 scored \(\d+%\) errors 26", last), last
