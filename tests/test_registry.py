"""The registry of environments: installed packages' entry points and register_env."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import envfoundry
from envfoundry import EnvLoadError, load, register_env
from envfoundry.core.registry import GROUP, REGISTRY, EnvRegistry
from tests.conftest import ROOT

#: envfoundry's own environments, as pyproject.toml declares them (sorted, as `envfoundry list` shows them)
_OWN = sorted(__import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
    "envfoundry.environments"])

COUNTER = ROOT / "examples" / "counter_env.py"

ENV_MODULE = '''
from envfoundry import Environment, Message, ProceduralTasks, Score, Task


def _generate(rng):
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return f"{a}+{b}", lambda split: Task(split=split, prompt=f"{a}+{b}?", data={"answer": a + b})


def make_env(size: int = 50, answer_bonus: int = 0) -> Environment:
    return Environment(
        name="efdemo-sum", version="0.3",
        tasks=ProceduralTasks.source(_generate, sizes={"train": size, "test": size}),
        graders=lambda g: Score(float(g.final == str(g.task.data["answer"] + answer_bonus))),
        reference=lambda ep: Message("assistant", str(ep.task.data["answer"])),
        max_turns=1,
    )
'''


def _package(root: Path, dist: str, entries: dict[str, str], module: str = ENV_MODULE) -> Path:
    pkg = root / dist
    (pkg / "efdemo").mkdir(parents=True)
    (pkg / "efdemo" / "__init__.py").write_text("")
    (pkg / "efdemo" / "envs.py").write_text(module)
    eps = "".join(f'"{k}" = "{v}"\n' for k, v in entries.items())
    (pkg / "pyproject.toml").write_text(f'''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.0.1"

[project.entry-points."{GROUP}"]
{eps}
[tool.setuptools]
packages = ["efdemo"]
''')
    return pkg


def _pip_install(pkg: Path, target: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", "--target", str(target), str(pkg)], capture_output=True, text=True,
                       cwd=pkg.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def _cli(*args: str, pythonpath: Path | None, cwd: Path):
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "envfoundry", *args], capture_output=True, text=True, env=env,
                          cwd=cwd)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder holding a pip-installed package that declares two environments, one broken."""
    root = tmp_path_factory.mktemp("pkgs")
    target = root / "site"
    _pip_install(_package(root, "efdemo-envs", {"efdemo-sum": "efdemo.envs:make_env",
                                                 "efdemo-broken": "efdemo.missing:make_env"}), target)
    return target


def test_an_installed_package_adds_environments_to_list_and_run(site, tmp_path):
    r = _cli("list", pythonpath=site, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines()
            if line.count("│") > 3 and line.split("│")[1].strip()}  # a folded description's next lines: no name
    assert {"math", "shop", "support", "efdemo-sum", "efdemo-broken"} <= set(rows)
    assert "efdemo-envs" in rows["efdemo-sum"] and "test (50)" in rows["efdemo-sum"]
    assert "cannot load" in rows["efdemo-broken"] and "efdemo.missing" in r.stdout  # shown, not fatal
    assert list(rows)[:len(_OWN)] == _OWN  # envfoundry's own first

    out = tmp_path / "run"
    r = _cli("run", "efdemo-sum", "--model", "scripted:oracle", "--limit", "2", "--out", str(out), "-q",
             pythonpath=site, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["pass_rate"] == 1.0 and summary["n_trajectories"] == 2
    assert (manifest["env"], manifest["env_version"], manifest["env_spec"]) == ("efdemo-sum", "0.3", "efdemo-sum")


def test_an_installed_environment_runs_in_workers_and_takes_typed_arguments(site, tmp_path):
    out = tmp_path / "w"
    r = _cli("run", "efdemo-sum", "--env-arg", "size=7", "--env-arg", "answer_bonus=1", "--model", "scripted:oracle",
             "--workers", "2", "--out", str(out), "-q", pythonpath=site, cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # every worker process found the package's environment by name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trajectories"] == 7 and summary["pass_rate"] == 0.0  # the bonus reached the factory as int
    r = _cli("run", "efdemo-sum", "--env-arg", "size=seven", "--model", "scripted:oracle", "--out",
             str(tmp_path / "bad"), pythonpath=site, cwd=tmp_path)
    assert r.returncode == 2 and "argument size='seven': expected an integer" in " ".join(r.stderr.split())


def test_without_the_package_the_name_is_unknown_and_a_broken_one_says_why(site, tmp_path):
    r = _cli("run", "efdemo-sum", "--model", "scripted:oracle", pythonpath=None, cwd=tmp_path)
    assert r.returncode == 2 and "unknown environment 'efdemo-sum'" in r.stderr
    assert "math" in " ".join(r.stderr.split())  # the names that do exist are listed
    r = _cli("run", "efdemo-broken", "--model", "scripted:oracle", pythonpath=site, cwd=tmp_path)
    assert r.returncode == 2 and "cannot import module 'efdemo.missing'" in " ".join(r.stderr.split())


def test_two_packages_declaring_one_name_is_an_error_naming_both(tmp_path):
    target = tmp_path / "site"
    _pip_install(_package(tmp_path, "efdemo-clash", {"math": "efdemo.envs:make_env", "bad:name": "efdemo.envs:x"}),
                 target)
    r = _cli("run", "math", "--model", "scripted:oracle", "--limit", "1", pythonpath=target, cwd=tmp_path)
    text = " ".join(r.stderr.split())
    assert r.returncode == 2 and "declared by several installed packages" in text
    assert "envfoundry (envfoundry.envs.math:make_env)" in text and "efdemo-clash (efdemo.envs:make_env)" in text
    r = _cli("list", pythonpath=target, cwd=tmp_path)
    assert r.returncode == 0 and "entry point 'bad:name' skipped" in " ".join(r.stderr.split())


def test_envfoundrys_own_environments_come_from_its_entry_points():
    assert not REGISTRY.own_missing(), "reinstall envfoundry (pip install -e .): its entry points are missing"
    own = [e for e in REGISTRY.entries() if e.source == "envfoundry"]
    assert [e.name for e in own] == _OWN  # what pyproject.toml declares is what the installed package has
    assert REGISTRY["math"] == "envfoundry.envs.math:make_env"
    from envfoundry.envs import BUILTIN  # the old name, kept for code written against it

    assert BUILTIN is REGISTRY and "math" in BUILTIN and "nosuch" not in BUILTIN and 3 not in REGISTRY
    empty = EnvRegistry(group="envfoundry.no-such-group")
    assert list(empty) == [] and empty.own_missing()


def test_a_stale_copy_of_the_metadata_ahead_on_the_path_does_not_hide_the_environments(tmp_path):
    """``PYTHONPATH=src`` puts setuptools' stale ``src/envfoundry.egg-info`` (no entry points) first."""
    stale = tmp_path / "stale" / "envfoundry.egg-info"
    stale.mkdir(parents=True)
    (stale / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: envfoundry\nVersion: 0.0.0\n")
    (stale / "entry_points.txt").write_text("[console_scripts]\nenvfoundry = envfoundry.cli:_entry\n")
    r = _cli("run", "math", "--model", "scripted:oracle", "--limit", "1", "--out", str(tmp_path / "r"), "-q",
             pythonpath=stale.parent, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def make_named():
    """A module-level factory, registered by object in a test below."""
    return load(f"{COUNTER}:make_env")


def test_register_env(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    try:
        register_env("counter-x", "examples/counter_env.py:make_env")  # a relative path is made absolute
        assert list(REGISTRY)[-1] == "counter-x"
        env = load("counter-x")
        assert env.name == "counter" and env.loaded_from == (f"{COUNTER}:make_env", {})  # workers import the file
        register_env("counter-x", f"{COUNTER}:make_env")  # the same again: fine
        with pytest.raises(ValueError, match="already .*pass replace=True"):
            register_env("counter-x", "tests.test_registry:make_named")
        register_env("counter-x", make_named, replace=True)
        assert REGISTRY["counter-x"] == "tests.test_registry:make_named"
        assert load("counter-x").loaded_from[0] == "tests.test_registry:make_named"
        with pytest.raises(ValueError, match="already"):
            register_env("math", make_named)  # an installed package's name
        run = envfoundry.evaluate("counter-x", model="scripted:oracle", out=tmp_path / "r", limit=3, workers=2)
        assert run.summary["pass_rate"] == 1.0
    finally:
        REGISTRY.unregister("counter-x")
    assert "counter-x" not in REGISTRY
    with pytest.raises(EnvLoadError, match="unknown environment 'counter-x'"):
        load("counter-x")


@pytest.mark.parametrize("name, factory, needle", [
    ("a:b", "m:f", "cannot name an environment"),
    ("x.py", "m:f", "cannot name an environment"),
    ("dir/x", "m:f", "cannot name an environment"),
    (" spaced", "m:f", "cannot name an environment"),
    ("", "m:f", "cannot name an environment"),
    ("ok", "no-colon", "is not a 'package.module:factory'"),
    ("ok", lambda: None, "not a module-level function"),
    ("ok", 42, "not a module-level function"),
])
def test_register_env_refuses_bad_names_and_factories(name, factory, needle):
    with pytest.raises(ValueError, match=needle):
        register_env(name, factory)
    assert "ok" not in REGISTRY
