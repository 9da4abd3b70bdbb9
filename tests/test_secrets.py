"""Secrets are never written (issue 18): the value of the variable named by ``--api-key-env`` (sent
as the ``Authorization`` header) is redacted from every stored and printed string, even when a
model server repeats it in its error bodies or its replies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import envfoundry
from envfoundry import Environment, Score, Task, tool
from envfoundry.core.errors import PolicyError
from envfoundry.core.sanitize import REDACTED, register_secret
from envfoundry.policies.openai import OpenAIPolicy, RetryConfig
from envfoundry.testing import StubServer
from tests.conftest import cli

KEY = "sk-live-ECHOED-0123456789abcdef"
COUNTER = f"{Path(__file__).resolve().parents[1] / 'examples' / 'counter_env.py'}:make_env"


def _nowhere(root: Path, *outputs: str) -> None:
    """The key is in no file under ``root`` and in none of ``outputs``."""
    for f in root.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    for text in outputs:
        assert KEY not in text


def _echo(body: dict[str, Any]) -> Any:
    """A proxy that repeats the key in what the model says, once in the content and once in a call."""
    if any(m["role"] == "tool" for m in body["messages"]):
        return f"<answer>4</answer> (authorised by Bearer {KEY})"
    return {"content": f"using {KEY}", "tool_calls": [{"function": {"name": "nope", "arguments": {"k": KEY}}}]}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_key_echoed_in_errors_and_replies_is_never_stored_or_printed(tmp_path: Path, monkeypatch,
                                                                       workers: str) -> None:
    monkeypatch.setenv("MY_KEY", KEY)
    outs: list[str] = []

    def run(*args: str) -> Any:
        r = cli(*args, timeout=300)
        outs.extend([r.stdout, r.stderr])
        return r

    srv = StubServer(lambda i, body: "http_401" if i % 3 == 0 else "ok", reply=_echo, echo_key=True)
    with srv.run_in_thread() as url:
        opts = ["--model", "openai:stub", "--base-url", url, "--api-key-env", "MY_KEY"]
        r = run("run", COUNTER, *opts, "--limit", "6", "--workers", workers, "--out", str(tmp_path / "run"), "-q")
        assert r.returncode == 1 and f"Bearer {REDACTED}" in r.stderr  # errors exceed --max-errors 0
        assert all(h["Authorization"] == f"Bearer {KEY}" for h in srv.headers)  # the key is sent, though
        r = run("calibrate", "math", *opts, "--limit", "3", "--samples", "2", "--out", str(tmp_path / "cal"))
        assert "Traceback" not in r.stderr
        r = run("agree", "--labels", "support", "--judge", "support", *opts, "--limit", "2", "--repeats", "1",
                "--adversarial", "0", "--pairs", "0", "--boot", "50", "--save", str(tmp_path / "scores.jsonl"))
        assert "Traceback" not in r.stderr and (tmp_path / "scores.jsonl").exists(), r.stderr
    recs = [json.loads(x) for x in (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()]
    errors = [x for x in recs if x["outcome"] == "policy_error"]
    assert errors and all(f"Authorization: Bearer {REDACTED}" in x["error"] for x in errors)
    done = [x for x in recs if x["outcome"] != "policy_error"]
    assert done and all(x["outcome"] == "completed" for x in done)
    assert all(x["policy_info"][0]["redacted"] == ["content", "tool_calls.0.arguments"] for x in done)
    assert all(x["messages"][-1]["content"].endswith(f"Bearer {REDACTED})") for x in done)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert REDACTED in summary["error_causes"][0][0]
    tid = errors[0]["task_id"]
    for args in (["show", str(tmp_path / "run")], ["show", str(tmp_path / "run"), "--task", tid]):
        assert run(*args).returncode == 0
    for fmt in ("x.jsonl", "x.parquet", "trl.jsonl"):
        extra = ["--format", "trl"] if fmt.startswith("trl") else []
        assert run("export", str(tmp_path / "run"), str(tmp_path / fmt), *extra).returncode == 0
    _nowhere(tmp_path, *outs)


def test_a_run_stored_before_redaction_is_printed_and_exported_redacted(tmp_path: Path, monkeypatch) -> None:
    """A last line of defence: records written by an older version that hold the key are shown and
    exported without it, when the run's key variable holds it."""
    run = tmp_path / "run"
    envfoundry.evaluate("math", model="scripted:random", out=run, limit=2)
    m = json.loads((run / "manifest.json").read_text())
    m["policy"]["api_key_env"] = "OLD_KEY"
    (run / "manifest.json").write_text(json.dumps(m))
    recs = [json.loads(x) for x in (run / "trajectories.jsonl").read_text().splitlines()]
    recs[0]["explanation"] = f"the server said {KEY}"
    (run / "trajectories.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
    monkeypatch.setenv("OLD_KEY", KEY)
    outs = []
    for args in (["show", str(run)], ["show", str(run), "--task", recs[0]["task_id"]],
                 ["export", str(run), str(tmp_path / "x.jsonl")]):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        outs += [r.stdout, r.stderr]
    assert any(REDACTED in o for o in outs)
    assert KEY not in (tmp_path / "x.jsonl").read_text() and all(KEY not in o for o in outs)


def test_a_short_key_is_redacted_from_the_policys_own_messages_only() -> None:
    """A key too short to tell from ordinary text ("abc") never appears in an error the policy
    raises, yet the model's own words that contain it are not mangled."""
    short = "abc"
    register_secret(short)  # too short: ignored globally

    async def main() -> tuple[str, str]:
        async with StubServer("http_401", echo_key=True) as srv:
            policy = OpenAIPolicy("m", base_url=srv.base_url, api_key=short, retry=RetryConfig(max_attempts=1))
            await policy.start()
            try:
                await policy._complete({"model": "m", "messages": []})
            except PolicyError as e:
                message = str(e)
            finally:
                await policy.close()
        async with StubServer(reply="abcdef is the alphabet") as srv:
            policy = OpenAIPolicy("m", base_url=srv.base_url, api_key=short)
            env = envfoundry.load("math")
            ep = env.reset(env.tasks("test")[0], seed=0)
            out = await policy.act(ep)
            await policy.close()
        return message, out.action.content

    message, content = asyncio.run(main())
    assert f"Bearer {REDACTED}" in message and "abc" not in message.replace("(request had", "")
    assert content == "abcdef is the alphabet"


def test_a_tool_that_returns_a_registered_key_is_redacted_by_the_store(tmp_path: Path) -> None:
    register_secret(KEY)

    @tool
    def leak(ep) -> str:
        """Return the key (an environment that reads it from the process environment)."""
        return f"token={KEY}"

    env = Environment(name="leaky", version="1", tools=[leak], graders=lambda g: Score(1.0), max_turns=2,
                      tasks=lambda split, seed: [Task(env="leaky", env_version="1", split="test", prompt="go")],
                      reference=lambda ep: envfoundry.Message("assistant", "", [envfoundry.ToolCall("leak", {})])
                      if ep.turns == 0 else envfoundry.Message("assistant", "done"))
    envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "run", limit=1)
    (rec,) = [json.loads(x) for x in (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()]
    assert rec["messages"][2]["content"] == f"token={REDACTED}" and rec["redacted"] == ["messages.2.content"]
    _nowhere(tmp_path)


@pytest.mark.parametrize("url_form", ["http://user:{s}@127.0.0.1:{port}/v1", "http://127.0.0.1:{port}/v1?api_key={s}"])
def test_a_credential_written_into_the_base_url_is_never_stored_or_printed(tmp_path: Path, url_form: str) -> None:
    secret = "pw-IN-THE-URL-9876543210"
    with StubServer(reply="<answer>4</answer>").run_in_thread() as base:
        port = base.split(":")[2].split("/")[0]
        url = url_form.format(s=secret, port=port)
        r = cli("run", COUNTER, "--model", "openai:stub", "--base-url", url, "--limit", "2",
                "--out", str(tmp_path / "run"))
        again = cli("run", "--out", str(tmp_path / "run"), "--resume")  # the stored URL lost its credential
    assert secret not in r.stdout + r.stderr and (tmp_path / "run" / "manifest.json").is_file(), r.stderr
    assert again.returncode == 2 and "give --base-url again" in again.stderr
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert REDACTED in json.dumps(manifest["policy"])  # the URL is kept, its credential replaced
