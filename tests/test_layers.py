"""The import-layering contract ([tool.importlinter] in pyproject.toml) and the import circles."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SRC = ROOT / "src" / "envfoundry"


def _lint_imports() -> Path:
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "import-linter is missing: pip install -e '.[test]'"
    return exe


def test_the_layering_contract_holds():
    r = subprocess.run([str(_lint_imports()), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", r.stdout), r.stdout


def test_lint_imports_fails_on_an_import_that_breaks_a_layer(tmp_path):
    """The contract can fail: a copy of the tree where core imports rollout is refused."""
    import shutil

    shutil.copytree(SRC, tmp_path / "src" / "envfoundry", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "envfoundry" / "core" / "zz_upwards.py").write_text("from ..rollout import run\n")
    (tmp_path / "src" / "envfoundry" / "envs" / "math" / "zz_private.py").write_text(
        "from envfoundry.core.task import Task\n")
    r = subprocess.run([str(_lint_imports()), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "envfoundry.core.zz_upwards -> envfoundry.rollout" in r.stdout
    assert "envfoundry.envs.math.zz_private -> envfoundry.core.task" in r.stdout


def test_every_part_of_the_package_is_placed_in_the_contract():
    """A new top-level part (server/, hub/, ...) must be given its place in the layers."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named = set()
    for c in config["contracts"]:
        for m in [*c.get("source_modules", []), *c.get("forbidden_modules", [])]:
            named.add(m.split(".")[1] if m.count(".") >= 1 else m)
    parts = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in SRC.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert parts - named == set(), f"parts missing from [tool.importlinter]: {sorted(parts - named)}"


_ENVS_IMPORT = re.compile(r"^\s*(from\s+(envfoundry\.envs|\.+envs)\b|import\s+envfoundry\.envs\b)", re.M)


def test_nothing_outside_envs_and_the_cli_imports_the_environments():
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("envs", "cli"):
            continue
        text = path.read_text()
        offenders += [f"{rel}: {m.group(0).strip()}" for m in _ENVS_IMPORT.finditer(text)]
        offenders += [f"{rel}: {m.group(0)}" for m in re.finditer(r"import_module\(\s*[\"']envfoundry\.envs", text)]
    assert offenders == []


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """envfoundry modules ``path`` imports (anywhere in it: functions, TYPE_CHECKING blocks too)."""
    mod = _module_of(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(x for x in (base, node.module or "") if x)
            for a in node.names:  # `from . import probes_text` imports a module, not its package
                sub = f"{target}.{a.name}"
                out.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m in modules and m != mod}


def _cycles() -> list[set[str]]:
    mods = {_module_of(p): p for p in SRC.rglob("*.py")}
    graph = {m: _imports(p, set(mods)) for m, p in mods.items()}
    # strongly connected components (Tarjan, iterative enough for a package this size)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return comps


#: circles that other work in progress removes (none left)
PENDING: list[set[str]] = []


def test_no_import_circles():
    cycles = _cycles()
    fixed = [{"envfoundry.core.env", "envfoundry.core.grader"},
             {"envfoundry.envs.shop.store", "envfoundry.envs.shop.faults"},
             {"envfoundry.quality.probes", "envfoundry.quality.probes_text"},
             {"envfoundry.quality.probes", "envfoundry.quality.probes_tools"},
             {"envfoundry.quality.mutation", "envfoundry.quality.mutators"},
             {"envfoundry", "envfoundry.rollout.run"},
             {"envfoundry.grading.agree", "envfoundry.grading.raters"}]
    for pair in fixed:
        assert not any(pair <= c for c in cycles), f"import circle is back: {sorted(pair)}"
    unexpected = [sorted(c) for c in cycles if not any(c == p for p in PENDING)]
    assert unexpected == [], f"import circles: {unexpected}"


def test_the_circle_finder_finds_a_circle(tmp_path, monkeypatch):
    """_cycles() can fail: two modules that import each other are found."""
    pkg = tmp_path / "envfoundry"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from .y import f\n")
    (pkg / "a" / "y.py").write_text("def f(): ...\nif False:\n    from envfoundry.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    assert _cycles() == [{"envfoundry.a.x", "envfoundry.a.y"}]


@pytest.mark.parametrize("code", ["import envfoundry.quality", "import envfoundry.quality.probes",
                                  "from envfoundry.quality.probes import make_probe"])
def test_probes_are_registered_whatever_is_imported_first(code):
    """The probe registry is full after importing any part of envfoundry.quality (no import order)."""
    r = subprocess.run([sys.executable, "-c", f"{code}\nfrom envfoundry.quality.probes import PROBES\n"
                        "print(len(PROBES))"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 10
