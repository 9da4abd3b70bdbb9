"""OpenAIPolicy against the stub server: every infrastructure fault, retries, tool protocols,
cancellation and secrets. Fault records must end as ``policy_error`` and never carry a score."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import envfoundry
from envfoundry import Environment, GradeInput, Score, Task, UsageError
from envfoundry.policies.openai import (
    INVALID_TOOL,
    OpenAIPolicy,
    RetryConfig,
    SamplingOptions,
    parse_tool_calls,
)
from envfoundry.rollout.engine import RolloutConfig, run_rollout
from envfoundry.testing import StubServer, unused_port

MATH = envfoundry.load("math")
TASKS = list(MATH.tasks("test")[:3])
ANSWERS = {t.prompt: t.data["answer"] for t in TASKS}
FAST = RetryConfig(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01, request_timeout_s=0.3)


def math_reply(body: dict[str, Any]) -> str:
    """The right answer to the question asked (the stub plays a perfect model)."""
    question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return f"<answer>{ANSWERS[question]}</answer>"


def make_policy(base_url: str, **kw: Any) -> OpenAIPolicy:
    kw.setdefault("retry", FAST)
    return OpenAIPolicy("stub-model", base_url=base_url, **kw)


async def evaluate(policy: OpenAIPolicy, out: Path, env: Environment = MATH, **kw: Any):
    run = await envfoundry.evaluate_async(env, model=policy, out=out, **kw)
    return run, list(run.records())


def assert_faults_never_scored(records: list[dict[str, Any]]) -> None:
    """The stub only ever answers correctly, so a completed record scores 1.0; anything else
    that a fault produced must be an unscored policy_error."""
    for r in records:
        if r["outcome"] == "completed":
            assert r["score"] == 1.0 and r["passed"] is True, r
        else:
            assert r["outcome"] == "policy_error", r
            assert r["score"] is None and r["passed"] is None, r


async def wait_until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# what a policy_error's message says for each fault (the last cause after the retries)
CAUSES = {
    "refuse": r"reset|closed the connection",
    "timeout": r"no reply within 0\.3s",
    "http_408": r"HTTP 408",
    "http_429": r"HTTP 429: rate limit",
    "http_500": r"HTTP 500: internal server error",
    "http_502": r"HTTP 502",
    "http_503": r"HTTP 503: model is overloaded",
    "malformed_json": r"malformed JSON",
    "truncated_body": r"cut short",
    "no_choices": r"no choices",
    "no_message": r"no message",
}


# ------------------------------------------------------------------ (a) transient faults
@pytest.mark.parametrize("fault", list(CAUSES))
def test_transient_fault_is_retried_and_the_rollout_is_scored(fault: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with StubServer([fault, fault], reply=math_reply, retry_after=0.01) as srv:
            run, records = await evaluate(make_policy(srv.base_url), tmp_path / "run", limit=1)
            assert srv.served[fault] == 2 and srv.n_requests == 3
        assert [r["outcome"] for r in records] == ["completed"]
        assert records[0]["score"] == 1.0 and records[0]["error"] is None
        assert records[0]["usage"]["prompt_tokens"] > 0
        assert records[0]["usage"]["completion_tokens"] > 0
        assert run.summary["pass_rate"] == 1.0
        assert_faults_never_scored(records)

    asyncio.run(main())


# ------------------------------------------------------------------ (b) persistent faults
@pytest.mark.parametrize("fault", list(CAUSES))
def test_persistent_fault_is_a_policy_error_without_score(fault: str, tmp_path: Path) -> None:
    retry = FAST.model_copy(update={"max_attempts": 2})

    async def main() -> None:
        async with StubServer(fault, reply=math_reply, retry_after=0.01) as srv:
            policy = make_policy(srv.base_url, retry=retry)
            run, records = await evaluate(policy, tmp_path / "run", limit=2, samples=2)
            assert srv.n_requests == 4 * 2  # 4 rollouts x 2 attempts
            url = srv.base_url
        assert len(records) == 4
        for r in records:
            assert r["outcome"] == "policy_error"
            assert r["score"] is None and r["passed"] is None
            assert f"model server at {url} failed 2 times" in r["error"], r["error"]
            assert re.search(CAUSES[fault], r["error"]), r["error"]
        s = run.summary
        assert s["n_errors"] == 4 and s["n_scored"] == 0
        assert s["pass_rate"] is None and s["mean_score"] is None
        [(cause, count)] = s["error_causes"]  # one cause, counted four times, in one line
        assert count == 4 and cause.startswith(f"model server at {url} failed 2 times") and "\n" not in cause
        assert re.search(CAUSES[fault], cause), cause
        assert_faults_never_scored(records)

    asyncio.run(main())


def test_connection_refused_is_a_policy_error(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{unused_port()}/v1"

    async def main() -> None:
        run, records = await evaluate(make_policy(base_url), tmp_path / "run", limit=2)
        assert [r["outcome"] for r in records] == ["policy_error"] * 2
        for r in records:
            assert r["score"] is None
            assert f"model server at {base_url} failed 3 times: cannot connect" in r["error"]
        assert run.summary["pass_rate"] is None and run.summary["n_errors"] == 2

    asyncio.run(main())


def test_errors_are_excluded_from_the_pass_rate(tmp_path: Path) -> None:
    broken = TASKS[0].prompt

    def mode(i: int, body: dict[str, Any]) -> str:
        return "http_503" if body["messages"][-1]["content"] == broken else "ok"

    async def main() -> None:
        async with StubServer(mode, reply=math_reply) as srv:
            run, records = await evaluate(make_policy(srv.base_url), tmp_path / "run",
                                          limit=3, samples=2)
        outcomes = sorted(r["outcome"] for r in records)
        assert outcomes == ["completed"] * 4 + ["policy_error"] * 2
        assert_faults_never_scored(records)
        s = run.summary
        assert s["n_scored"] == 4 and s["n_errors"] == 2
        assert s["pass_rate"] == 1.0  # 4/4, not 4/6: errors are not failures
        assert s["outcomes"]["policy_error"] == 2

    asyncio.run(main())


def test_resume_reruns_the_rollouts_an_outage_failed(tmp_path: Path) -> None:
    # the server is down (503) for the whole first run, then back: --resume scores every rollout
    down = {"on": True}

    def mode(i: int, body: dict[str, Any]) -> str:
        return "http_503" if down["on"] else "ok"

    async def main() -> None:
        async with StubServer(mode, reply=math_reply) as srv:
            policy = make_policy(srv.base_url, retry=FAST.model_copy(update={"max_attempts": 2}))
            run, records = await evaluate(policy, tmp_path / "run", limit=3, samples=2)
            assert [r["outcome"] for r in records] == ["policy_error"] * 6 and run.summary["n_errors"] == 6
            down["on"] = False
            run, records = await evaluate(make_policy(srv.base_url), tmp_path / "run", resume=True)
        assert sorted(r["outcome"] for r in records) == ["completed"] * 6
        assert run.summary["pass_rate"] == 1.0 and run.summary["n_errors"] == 0 and run.summary["complete"]
        assert len((tmp_path / "run" / "errors.jsonl").read_text().splitlines()) == 6  # kept aside, not lost
        assert_faults_never_scored(records)

    asyncio.run(main())


# ------------------------------------------------------------------ (c) Retry-After
def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    retry = RetryConfig(max_attempts=3, base_delay_s=0.001, max_delay_s=0.1)

    async def main() -> None:
        async with StubServer(["http_429"], reply=math_reply, retry_after=0.2) as srv:
            _, records = await evaluate(make_policy(srv.base_url, retry=retry),
                                        tmp_path / "run", limit=1)
            gap = srv.request_times[1] - srv.request_times[0]
        assert records[0]["outcome"] == "completed" and records[0]["score"] == 1.0
        assert 0.19 <= gap < 1.0, gap  # the jittered backoff alone would wait <= 1 ms

    asyncio.run(main())


def test_429_retry_after_is_capped(tmp_path: Path) -> None:
    retry = RetryConfig(max_attempts=2, base_delay_s=0.001, max_delay_s=0.05)  # cap: 0.2 s

    async def main() -> None:
        async with StubServer(["http_429"], reply=math_reply, retry_after=30) as srv:
            _, records = await evaluate(make_policy(srv.base_url, retry=retry),
                                        tmp_path / "run", limit=1)
            gap = srv.request_times[1] - srv.request_times[0]
        assert records[0]["outcome"] == "completed"
        assert 0.19 <= gap < 2.0, gap

    asyncio.run(main())


# ------------------------------------------------------------------ (d) not retried
@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ("http_400", "HTTP 400: invalid value for 'temperature'"),
        ("http_401", "HTTP 401: invalid API key"),
        ("http_404", "HTTP 404: stub error 404 (check base_url: it should end in /v1)"),
    ],
)
def test_client_errors_are_not_retried(fault: str, text: str) -> None:
    retry = RetryConfig(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01)

    async def main() -> None:
        async with StubServer(fault) as srv:
            policy = make_policy(srv.base_url, retry=retry)
            rec = await run_rollout(MATH, TASKS[0], 0, policy, RolloutConfig())
            await policy.close()
            assert srv.n_requests == 1
        assert rec["outcome"] == "policy_error" and rec["score"] is None
        assert "rejected the request (not retried)" in rec["error"]
        assert text in rec["error"], rec["error"]

    asyncio.run(main())


# ------------------------------------------------------------------ (e) tool protocols
def add(ep: Any, a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def adder_env() -> Environment:
    def tasks(split: str, seed: int) -> list[Task]:
        return [Task(env="adder", env_version="0.1.0", split=split, system="You add numbers.",
                     prompt="What is 2 + 3? Use the add tool.", data={"answer": 5})]

    def grade(g: GradeInput) -> Score:
        used = any(m.role == "tool" and m.content == "5" for m in g.messages)
        ok = used and g.final.strip() == "<answer>5</answer>"
        return Score(1.0 if ok else 0.0, explanation="used add and answered 5" if ok else "no")

    return Environment(name="adder", tasks=tasks, graders=[grade], tools=[add], max_turns=6)


ADDER = adder_env()
GOOD_CALL = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'


def text_script(first: str) -> Callable[[dict[str, Any]], str]:
    """A text-protocol model: ``first``, then a good call once it saw an error, then the answer."""

    def reply(body: dict[str, Any]) -> str:
        results = [m["content"] for m in body["messages"]
                   if m["role"] == "user" and m["content"].startswith("<tool_result")]
        if not results:
            return first
        if results[-1].split("\n")[1].startswith("error:"):
            return GOOD_CALL
        return "<answer>5</answer>"

    return reply


async def one_rollout(policy: OpenAIPolicy, env: Environment = ADDER) -> dict[str, Any]:
    try:
        return await run_rollout(env, env.tasks("test")[0], 0, policy, RolloutConfig())
    finally:
        await policy.close()


@pytest.mark.parametrize(
    ("first", "observation"),
    [
        (  # bad JSON but a readable name: the tool reports the JSON error and where it is
            '<tool_call>{"name": "add", "arguments": {"a": 2, "b": }}</tool_call>',
            "error: tool 'add': arguments are not valid JSON (Expecting value at char",
        ),
        ('<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>',
         "error: tool 'add' missing argument `b: int`"),
        ('<tool_call>{"name": "add", "arguments": [2, 3]}</tool_call>',
         "error: tool 'add': arguments must be a JSON object, got list"),
        ('<tool_call>{"name": "mul", "arguments": {"a": 2}}</tool_call>',
         "error: unknown tool 'mul' (tools: add)"),
        ('<tool_call>{"arguments": {"a": 2, "b": 3}}</tool_call>',
         f"error: unknown tool '{INVALID_TOOL}' (tools: add)"),
        ("<tool_call>add(2, 3)</tool_call>", f"error: unknown tool '{INVALID_TOOL}' (tools: add)"),
    ],
)
def test_text_protocol_garbled_call_gets_an_error_and_the_episode_goes_on(
    first: str, observation: str
) -> None:
    async def main() -> None:
        async with StubServer(reply=text_script(first)) as srv:
            rec = await one_rollout(make_policy(srv.base_url, tool_mode="text"))
            requests = srv.requests
        assert rec["outcome"] == "completed" and rec["score"] == 1.0, rec
        assert rec["turns"] == 3
        tool_msgs = [m for m in rec["messages"] if m["role"] == "tool"]
        assert tool_msgs[0]["content"].startswith(observation), tool_msgs[0]
        assert tool_msgs[1]["content"] == "5"
        # the model saw the error as a tool_result block in a user message, its own reply as is
        sent = requests[1]["messages"]
        assert sent[-2] == {"role": "assistant", "content": first}
        assert sent[-1]["role"] == "user"
        assert sent[-1]["content"].startswith('<tool_result name="')
        assert observation in sent[-1]["content"]
        for body in requests:  # text mode: no native tools, no tool role
            assert "tools" not in body
            assert all(m["role"] != "tool" for m in body["messages"])
            assert body["messages"][0]["role"] == "system"
            assert body["messages"][0]["content"].startswith("You add numbers.\n\n# Tools")
            assert '{"name": "add", "description": "Add two integers."' in (
                body["messages"][0]["content"])

    asyncio.run(main())


def test_text_protocol_reports_unreadable_blocks_in_policy_info() -> None:
    async def main() -> None:
        first = "<tool_call>{oops</tool_call>"
        async with StubServer(reply=text_script(first)) as srv:
            rec = await one_rollout(make_policy(srv.base_url, tool_mode="text"))
        assert rec["outcome"] == "completed"
        info = rec["policy_info"]
        assert info[0]["tool_protocol"] == "text"
        assert "not valid JSON" in info[0]["tool_call_errors"][0]
        assert "tool_call_errors" not in info[1]

    asyncio.run(main())


def test_parse_tool_calls() -> None:
    text = (
        'I will add twice.\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
        '<tool_call>\n```json\n{"name": "add", "parameters": {"a": 3, "b": 4}}\n```\n</tool_call>'
        '<tool_call>{"name": "add", "arguments": "{\\"a\\": 5, \\"b\\": 6}"}</tool_call>'
        '<tool_call>{"name": "add", "arguments": {"a": 7, "b": 8}}'  # left unclosed
    )
    calls, problems = parse_tool_calls(text)
    assert problems == []
    assert [(c.name, c.arguments) for c in calls] == [
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": 3, "b": 4}),
        ("add", '{"a": 5, "b": 6}'),
        ("add", {"a": 7, "b": 8}),
    ]
    calls, problems = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1,</tool_call>'
                                       "<tool_call>[1, 2]</tool_call>")
    assert [c.name for c in calls] == ["add", INVALID_TOOL]
    assert calls[0].arguments == '{"name": "add", "arguments": {"a": 1,'
    assert len(problems) == 2 and "not valid JSON" in problems[0] and '"name"' in problems[1]
    assert parse_tool_calls("no calls here, <answer>5</answer>") == ([], [])


def native_reply(body: dict[str, Any]) -> str | dict[str, Any]:
    if not any(m["role"] == "tool" for m in body["messages"]):
        return {"content": None, "tool_calls": [{
            "id": "call_abc", "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
        }]}
    return "<answer>5</answer>"


@pytest.mark.parametrize("mode", ["native", "auto"])
def test_native_tool_calls_round_trip(mode: str) -> None:
    async def main() -> None:
        async with StubServer(reply=native_reply) as srv:
            rec = await one_rollout(make_policy(srv.base_url, tool_mode=mode))
            requests = srv.requests
        assert rec["outcome"] == "completed" and rec["score"] == 1.0, rec
        assert len(requests) == 2
        assert requests[0]["tools"] == ADDER.tool_schemas()
        assert requests[0]["messages"] == [
            {"role": "system", "content": "You add numbers."},
            {"role": "user", "content": "What is 2 + 3? Use the add tool."},
        ]
        assert requests[1]["messages"][2:] == [
            {"role": "assistant", "content": "", "tool_calls": [{
                "id": "call_abc", "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
            }]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "5"},
        ]
        call = rec["messages"][2]["tool_calls"][0]
        assert call == {"id": "call_abc", "name": "add", "arguments": '{"a": 2, "b": 3}'}
        assert rec["policy_info"][0]["finish_reason"] == "tool_calls"
        assert rec["usage"]["completion_tokens"] > 0
        # token usage per turn: one entry for each of the two requests, adding up to the rollout's
        per_turn = rec["turn_usage"]
        assert len(per_turn) == 2 == rec["turns"] and all(u["prompt_tokens"] > 0 for u in per_turn)
        assert per_turn[1]["prompt_tokens"] > per_turn[0]["prompt_tokens"]  # the second sees the tool result
        for k in ("prompt_tokens", "completion_tokens"):
            assert sum(u[k] for u in per_turn) == rec["usage"][k]

    asyncio.run(main())


def test_auto_mode_falls_back_to_text_when_the_server_rejects_tools() -> None:
    async def main() -> None:
        async with StubServer(reply=text_script(GOOD_CALL), reject_tools=True) as srv:
            policy = make_policy(srv.base_url, tool_mode="auto")
            rec = await one_rollout(policy)
            requests = srv.requests
        assert rec["outcome"] == "completed" and rec["score"] == 1.0, rec
        assert policy.uses_text_tools
        assert "tools" in requests[0]  # rejected with 400 "... does not support tools"
        assert all("tools" not in b for b in requests[1:])
        assert "# Tools" in requests[1]["messages"][0]["content"]
        assert len(requests) == 3  # the rejected request, the call, the answer

    asyncio.run(main())


# ------------------------------------------------------------------ (f) cancellation
def test_cancelling_a_request_propagates_and_closes_the_connection() -> None:
    async def main() -> None:
        async with StubServer("timeout") as srv:
            policy = make_policy(srv.base_url, retry=RetryConfig(request_timeout_s=30))
            await policy.start()
            task = asyncio.create_task(policy.act(MATH.reset(TASKS[0], seed=1)))
            await wait_until(lambda: srv.n_requests == 1)
            t0 = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.perf_counter() - t0 < 0.5
            await wait_until(lambda: srv.disconnects == 1)
            await policy.close()

    asyncio.run(main())


def test_cancelling_during_backoff_propagates() -> None:
    async def main() -> None:
        async with StubServer("http_503") as srv:
            policy = make_policy(srv.base_url, retry=RetryConfig(base_delay_s=30, max_delay_s=30))
            policy._rng.seed(0)  # a backoff of several seconds
            task = asyncio.create_task(policy.act(MATH.reset(TASKS[0], seed=1)))
            await wait_until(lambda: srv.n_requests == 1)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert srv.n_requests == 1
            await policy.close()

    asyncio.run(main())


def test_cancelling_a_run_cancels_in_flight_requests(tmp_path: Path) -> None:
    async def main() -> None:
        async with StubServer("timeout") as srv:
            policy = make_policy(srv.base_url, retry=RetryConfig(request_timeout_s=30))
            run = asyncio.create_task(envfoundry.evaluate_async(
                MATH, model=policy, out=tmp_path / "run", limit=3, concurrency=3))
            await wait_until(lambda: srv.n_requests == 3)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            await wait_until(lambda: srv.disconnects == 3)
        traj = tmp_path / "run" / "trajectories.jsonl"
        assert not traj.exists() or traj.read_text() == ""  # nothing was recorded as finished

    asyncio.run(main())


# ------------------------------------------------------------------ (g) secrets
def test_api_key_is_sent_but_never_recorded(tmp_path: Path) -> None:
    secret = "sk-test-SECRET-0123456789"

    async def main() -> OpenAIPolicy:
        async with StubServer(reply=math_reply) as srv:
            policy = make_policy(srv.base_url, api_key=secret)
            await evaluate(policy, tmp_path / "run", limit=2)
            assert all(h["Authorization"] == f"Bearer {secret}" for h in srv.headers)
        return policy

    policy = asyncio.run(main())
    assert secret not in json.dumps(policy.describe()) and secret not in repr(policy)
    files = list((tmp_path / "run").iterdir())
    assert any(f.name == "manifest.json" for f in files)
    for f in files:
        assert secret not in f.read_text(), f
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["policy"]["spec"] == "openai:stub-model"
    assert manifest["policy"]["tool_mode"] == "auto"
    assert manifest["policy"]["sampling"]["temperature"] == 0.7


# ------------------------------------------------------------------ requests and helpers
def test_requests_carry_sampling_options_and_reproducible_seeds(tmp_path: Path) -> None:
    sampling = SamplingOptions(temperature=0.2, top_p=0.9, max_tokens=64)

    async def seeds(out: Path, sampling: SamplingOptions) -> list[dict[str, Any]]:
        async with StubServer(reply=math_reply) as srv:
            await evaluate(make_policy(srv.base_url, sampling=sampling), out, limit=3, samples=2)
            return list(srv.requests)  # type: ignore[arg-type]

    first = asyncio.run(seeds(tmp_path / "a", sampling))
    again = asyncio.run(seeds(tmp_path / "b", sampling))
    for body in first:
        assert body["model"] == "stub-model" and body["temperature"] == 0.2
        assert body["top_p"] == 0.9 and body["max_tokens"] == 64
        assert 0 <= body["seed"] < 2**31
    by_prompt = sorted((b["messages"][-1]["content"], b["seed"]) for b in first)
    assert len({s for _, s in by_prompt}) == 6  # every rollout its own seed
    assert by_prompt == sorted((b["messages"][-1]["content"], b["seed"]) for b in again)
    fixed = asyncio.run(seeds(tmp_path / "c", SamplingOptions(seed=7)))
    assert {b["seed"] for b in fixed} == {7}


def test_stub_server_in_a_thread_serves_sync_code(tmp_path: Path) -> None:
    with StubServer(reply=math_reply).run_in_thread() as base_url:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as r:
            models = json.load(r)
        assert models["data"][0]["id"] == "stub-model"
        run = envfoundry.evaluate(MATH, model=make_policy(base_url), out=tmp_path / "run",
                                  limit=2)
    assert run.summary["n_scored"] == 2 and run.pass_rate == 1.0


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="tool_mode"):
        OpenAIPolicy("m", tool_mode="json")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="base_url"):
        OpenAIPolicy("m", base_url="localhost:8000/v1")
    with pytest.raises(ValueError):
        SamplingOptions(top_p=0)
    with pytest.raises(ValueError):
        RetryConfig(max_attempts=0)
    with pytest.raises(ValueError, match="unknown stub mode"):
        StubServer("explode")
