"""``envfoundry init NAME``: a new environment package, ready for ``pip install -e``.

It declares the environment in the entry-point group ``envfoundry.environments`` (so ``envfoundry
list`` shows it and every command runs it by name once installed), with a working example
environment written with the public API only, a test that runs ``envfoundry check`` on it and a
README with the commands from here to a published version.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from pathlib import Path

from ..core.errors import EnvLoadError, UsageError
from ..core.registry import GROUP, REGISTRY, check_name
from ..core.version import __version__

#: a distribution name (PEP 508) that is also a plain environment name
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")

PYPROJECT = '''[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "0.1.0"
description = "{description}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["envfoundry>={envfoundry}"]

# the environment, known by name to every envfoundry command once this package is installed
[project.entry-points."{group}"]
{name} = "{module}.env:make_env"

[tool.hatch.build.targets.wheel]
packages = ["src/{module}"]

# `pip install -e .` puts src/ on the path (a .pth file): no `editables` package needed
[tool.hatch.build]
dev-mode-dirs = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

INIT = '''"""The {name} environment for envfoundry."""

from .env import make_env

__all__ = ["make_env"]
'''

ENV = '''"""{description}

Replace the example with your own: tasks (data, one Task each), tools (typed functions on the
episode), a world (the state tools change), a grader (a Score from the episode) and a reference
solution (what `envfoundry check` and `audit` test the grader with).
"""

from envfoundry import Environment, Message, ProceduralTasks, Score, Task, ToolCall, ToolError, World, tool

NAME = "{name}"
VERSION = "0.1.0"


def _generate(rng):
    """One task from a seeded random generator: (a key that identifies the problem, split -> Task)."""
    start, target = rng.randint(0, 30), rng.randint(0, 60)
    target += target >= start  # never solved from the start: doing nothing must not pass
    return f"{{start}}->{{target}}", lambda split: Task(
        split=split, prompt=f"The dial shows {{start}}. Turn it to {{target}} with the tools, then call done.",
        world={{"start": start}}, data={{"target": target}}, metadata={{"difficulty": abs(target - start)}},
    )


@tool(writes=True)
def turn(ep, steps: int) -> str:
    """Turn the dial by `steps` (between -10 and 10)."""
    if not -10 <= steps <= 10:
        raise ToolError(f"steps must be between -10 and 10, got {{steps}}")
    ep.world.set_value("dial", ep.world.value("dial") + steps)
    return f"the dial shows {{ep.world.value('dial')}}"


@tool
def done(ep) -> str:
    """Say that the dial is set."""
    ep.finish()
    return "done"


def grade(g) -> Score:
    value, target = g.world_after.value("dial"), g.task.data["target"]
    return Score(1.0 if value == target else 0.0, {{"dial": value}}, f"dial {{value}}, target {{target}}")


def solve(ep) -> Message:
    """The reference solution: turn towards the target, then say done."""
    gap = ep.task.data["target"] - ep.world.value("dial")
    call = ToolCall("turn", {{"steps": max(-10, min(10, gap))}}) if gap else ToolCall("done", {{}})
    return Message("assistant", tool_calls=[call])


def make_env() -> Environment:
    return Environment(
        name=NAME,
        version=VERSION,
        description="{description}",
        tasks=ProceduralTasks.source(_generate, sizes={{"train": 400, "test": 100}}),
        tools=[turn, done],
        world=lambda task: World(values={{"dial": task.world["start"]}}),
        graders=grade,
        reference=solve,
        max_turns=16,
    )
'''

TEST = '''"""The environment passes envfoundry's conformance checks (run: pytest)."""

import json
import subprocess
import sys

from envfoundry import load


def test_it_is_known_by_name():
    env = load("{name}")
    assert env.name == "{name}" and env.tasks("test")


def test_envfoundry_check_passes():
    r = subprocess.run([sys.executable, "-m", "envfoundry", "check", "{name}", "--limit", "10", "--json"],
                       capture_output=True, text=True)
    report = json.loads(r.stdout)
    failed = [c["name"] + ": " + c["detail"] for c in report["checks"] if c["status"] == "fail"]
    assert r.returncode == 0 and not failed, failed or r.stderr
'''

README = '''# {name}

{description}

An environment for envfoundry, declared in the entry-point
group `{group}` as `{name}`.

```bash
pip install -e .                                   # envfoundry list shows {name}
envfoundry run {name} --model scripted:oracle      # the reference solution on the test split
pytest                                             # envfoundry check on it
envfoundry audit {name}                            # reward-hacking probes, grader mutations
envfoundry scorecard {name} --run-missing          # everything known about this version
envfoundry pack                                    # dist/*.whl with the scorecard inside
envfoundry publish --hub URL --token-env ENVFOUNDRY_HUB_TOKEN
```

Edit `src/{module}/env.py`: tasks, tools, world, grader and the reference solution.
'''

GITIGNORE = "__pycache__/\n*.py[co]\ndist/\nbuild/\n*.egg-info/\nquality/\nruns/\n"


def module_name(name: str) -> str:
    return re.sub(r"[-.]+", "_", name).lower()


def _check(name: str, module: str) -> None:
    why = check_name(name)
    if why or not _NAME.match(name):
        raise UsageError(f"{name!r} cannot name an environment package: use letters, digits, '-', '_' and '.', "
                         "starting and ending with a letter or digit" + (f" ({why})" if why else ""))
    try:
        taken = REGISTRY.entry(name)
    except EnvLoadError:
        taken = True
    if taken:
        raise UsageError(f"the environment name {name!r} is already taken here ({getattr(taken, 'source', 'several')}"
                         "): choose another name")
    if not module.isidentifier() or keyword.iskeyword(module):
        raise UsageError(f"the Python package name {module!r} is not a Python identifier (it is --module, by default "
                         "the name with '_' for '-' and '.'): give --module")
    if module in sys.stdlib_module_names or module == "envfoundry":
        raise UsageError(f"the package name {module!r} is taken by Python or envfoundry: choose another with "
                         "--module")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is not None:
        raise UsageError(f"a package {module!r} is already importable here ({found.origin}): choose another with "
                         "--module")


def scaffold(name: str, parent: Path | str = ".", *, module: str | None = None, description: str | None = None) -> Path:
    """Write the package ``parent/NAME`` (see the module documentation) and return its folder."""
    module = module or module_name(name)
    _check(name, module)
    description = " ".join((description or f"The {name} environment: turn a dial to a target number.").split())
    description = description.replace('"', "'").replace("\\", "/")
    dest = Path(parent) / name
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{str(dest)!r} exists and is not an empty folder: choose another --dir or name")
    values = {"name": name, "dist": name, "module": module, "description": description, "group": GROUP,
              "envfoundry": __version__}
    files = {
        "pyproject.toml": PYPROJECT, f"src/{module}/__init__.py": INIT, f"src/{module}/env.py": ENV,
        "tests/test_env.py": TEST, "README.md": README, ".gitignore": GITIGNORE,
    }
    for rel, template in files.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(template.format(**values) if "{" in template else template, encoding="utf-8")
    return dest


__all__ = ["module_name", "scaffold"]
