"""The README opens with exactly two set-up commands, and .ci/run runs the second."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, re.S)


def test_two_setup_commands_and_ci_runs_the_second():
    cmds = _commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "envfoundry run" in cmds[0] and "--model local" in cmds[0]
    assert "pytest" in cmds[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmds[1] in ci.splitlines()


def test_readme_example_is_the_example_file():
    text = (ROOT / "README.md").read_text()
    body = (ROOT / "examples" / "counter_env.py").read_text().split('"""', 2)[2].strip()
    assert body in text
