"""``envfoundry init``: the package it writes, and the names it refuses."""

from __future__ import annotations

import ast
import tomllib

import pytest

from envfoundry.core.loading import load
from envfoundry.hub.scaffold import scaffold

from .conftest import cli


def test_the_scaffold_is_a_complete_environment_package(tmp_path):
    dest = scaffold("my-dial", tmp_path, description='A "quoted" description\\ with a backslash')
    py = tomllib.loads((dest / "pyproject.toml").read_text())
    assert py["build-system"]["build-backend"] == "hatchling.build"
    assert py["project"]["name"] == "my-dial"
    assert py["project"]["entry-points"]["envfoundry.environments"] == {"my-dial": "my_dial.env:make_env"}
    env_file = dest / "src" / "my_dial" / "env.py"
    imports = [n for n in ast.walk(ast.parse(env_file.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports and all(isinstance(n, ast.ImportFrom) and n.module == "envfoundry" for n in imports)
    assert "envfoundry\", \"check\"" in (dest / "tests" / "test_env.py").read_text()
    readme = (dest / "README.md").read_text()
    assert readme.index("pip install -e .") < readme.index("envfoundry pack") < readme.index("envfoundry publish")
    # the example environment is sound: the conformance checks pass on it
    from envfoundry.quality import CheckConfig, check_env

    env = load(f"{env_file}:make_env")
    report = check_env(env, config=CheckConfig(tasks=4, samples=1, subprocess=False))
    assert env.name == "my-dial" and report.ok, [r for r in report.results if r.status == "fail"]


@pytest.mark.parametrize("name,says", [
    ("my env", "cannot name"), ("a/b", "cannot name"), ("_dash", "cannot name"), ("x.py", "cannot name"),
    ("math", "already taken"), ("json", "taken by Python"), ("envfoundry", "taken by Python or envfoundry"),
    ("pytest", "already importable"), ("class", "not a Python identifier"),
])
def test_names_that_cannot_work_are_refused(tmp_path, capsys, name, says):
    from envfoundry.cli import main

    assert main(["init", name, "--dir", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert says in err, err
    assert not any(tmp_path.iterdir())


def test_a_used_folder_is_refused_and_an_empty_one_is_used(tmp_path):
    (tmp_path / "dialx" / "keep.txt").parent.mkdir()
    (tmp_path / "dialx" / "keep.txt").write_text("mine")
    r = cli("init", "dialx", "--dir", str(tmp_path))
    assert r.returncode == 2 and "not an empty folder" in r.stderr
    assert (tmp_path / "dialx" / "keep.txt").read_text() == "mine"
    (tmp_path / "dialy").mkdir()
    r = cli("init", "dialy", "--dir", str(tmp_path), "--module", "dial_y_pkg")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dialy" / "src" / "dial_y_pkg" / "env.py").is_file()
