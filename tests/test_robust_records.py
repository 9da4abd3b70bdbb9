"""Records are written whatever a model or a tool returns (issue 18).

Arbitrary Unicode (lone surrogates, control characters, NUL, huge strings), integers beyond 64
bits, deep nesting and argument values of every shape go through every text and argument path of a
rollout: the assistant's content, tool-call names and arguments, tool results, world writes,
grader explanations and task metadata. Each rollout must end with a typed outcome and a record that
the store's own reader accepts; what had to be escaped is listed in the record.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import envfoundry
from envfoundry import Environment, Message, Score, Task, ToolCall, World, tool
from envfoundry.core.outcome import Usage
from envfoundry.core.policy import PolicyOutput
from envfoundry.core.sanitize import MAX_DEPTH, REDACTED, printable, register_secret, storable
from envfoundry.policies.openai import OpenAIPolicy, RetryConfig
from envfoundry.rollout.store import RunStore, encode_record, record_problem
from envfoundry.testing import StubServer

SECRET = "sk-robust-SECRET-7f3a9b"
register_secret(SECRET)

# -------------------------------------------------------------------- strategies
CHARS = st.characters(categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co", "Cn"])
SPECIAL = st.sampled_from([
    "\ud800", "\udfff", "a\ud83dz", "\ud83d\ude00", "\x00", "nul\x00in\x00the\x00middle", "\x1b[31mred\x1b[0m",
    '{"query": "\\ud800"}', "\\ud800", "[" * 3000 + "]" * 3000, '{"a": ' * 2000 + "1" + "}" * 2000,
    "\u2028\u2029\ufeff", "\U0010ffff", SECRET, f"key={SECRET}!", "",
])
TEXT = st.one_of(st.text(CHARS, max_size=40), SPECIAL, st.builds(lambda c, n: c * n, SPECIAL, st.integers(1, 50)))
HUGE = st.builds(lambda c, n: c * n, st.sampled_from(["x", "\ud800", "é", "\x00"]), st.integers(100_000, 400_000))
ANY_TEXT = st.one_of(TEXT, TEXT, TEXT, HUGE)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def assert_readable(line: bytes) -> dict[str, Any]:
    """One stored line: valid UTF-8 JSON, no secret, a record the store's reader accepts."""
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    line.decode("utf-8")  # strict
    rec = orjson.loads(line)
    assert SECRET.encode() not in line
    return rec


# -------------------------------------------------------------------- the encoder itself
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSONISH, key=st.one_of(TEXT, st.integers()))
def test_any_value_becomes_a_line_that_reads_back(value: Any, key: Any) -> None:
    rec = {"task_id": "t", "sample": 0, "outcome": "policy_error", "error": None, "metadata": {key: value}}
    line = encode_record(rec)
    back = assert_readable(line)
    assert record_problem(back) is None
    clean, changes = storable(rec)
    if not changes:  # nothing had to change: stored as it was (floats that are not finite aside)
        assert back["metadata"] == orjson.loads(orjson.dumps(clean))["metadata"]
    else:  # the record says which fields were changed
        assert set(changes.paths) <= {"escaped", "redacted"}
        assert all(back[kind] for kind in changes.paths)


def test_what_is_escaped_and_what_is_kept() -> None:
    rec = {"task_id": "t", "sample": 0, "outcome": "completed", "score": 1.0, "passed": True,
           "explanation": "ok \ud800", "metadata": {"big": 2**70, 7: "int key", "deep": nested(MAX_DEPTH + 50),
                                                     "fine": "é \x00 \U0001f600", "key": f"Bearer {SECRET}"}}
    back = assert_readable(encode_record(rec))
    assert back["explanation"] == "ok \\ud800"  # the text kept, the lone surrogate as its escape
    md = back["metadata"]
    assert md["big"] == str(2**70) and md["7"] == "int key" and md["fine"] == "é \x00 \U0001f600"
    assert md["key"] == f"Bearer {REDACTED}"
    assert "nested more than" in json.dumps(md["deep"])
    escaped = back["escaped"]
    assert "explanation" in escaped and "metadata.big" in escaped
    assert len(escaped) == 3 and any(p.startswith("metadata.deep.k.0.k.0") and len(p) < 130 for p in escaped)
    assert back["redacted"] == ["metadata.key"]
    assert "fine" not in " ".join(back["escaped"])  # text that encodes is never touched
    # a record that encodes as it is is written byte for byte as orjson writes it: no marks
    plain = {"task_id": "t", "sample": 1, "outcome": "policy_error", "error": "x \x00 é"}
    assert encode_record(plain) == orjson.dumps(plain, option=orjson.OPT_APPEND_NEWLINE)


def test_printable_shows_control_characters_and_keeps_lines() -> None:
    assert printable("a\x1b[2Jb\x00c\nd\te\x85") == "a\\x1b[2Jb\\x00c\nd\te\\x85"
    assert printable({"k\x07": ["\ud800", SECRET]}) == {"k\\x07": ["\\ud800", REDACTED]}
    # a summary's error causes are printed and stored as they are made
    from envfoundry.rollout.summary import error_cause

    cause = error_cause(f"Traceback ...\nValueError: {SECRET} \x1b[2J\ud800" + "x" * 10_000)
    assert cause.startswith(f"ValueError: {REDACTED} \\x1b[2J\\ud800x") and len(cause) == 200


# -------------------------------------------------------------------- whole rollouts, in process
@tool
def echo(ep, text: str = "") -> str:
    """Return the text."""
    return text


@tool(writes=True)
def note(ep, text: str = "", key: str = "n") -> str:
    """Write the text into the world."""
    ep.world.upsert("notes", key or "n", {"text": text, "size": len(text)})
    return f"noted {text}"


@tool
def blob(ep, text: str = "") -> dict:
    """Return a structure holding the text (a tool result that is not text)."""
    return {"text": text, "big": 2**80, "items": [text, {"again": text}]}


def _grade(g) -> Score:
    last = next((m.content for m in reversed(g.messages) if m.role == "assistant"), "")
    return Score(0.5, {"last": last, "notes": g.world_after.count("notes")}, f"the agent said {last[:200]}")


def _env(meta: str) -> Environment:
    task = Task(env="robust", env_version="1", split="test", prompt="do anything", world={},
                data={}, metadata={"text": meta})
    return Environment(name="robust", version="1", tasks=lambda split, seed: [task], tools=[echo, note, blob],
                       world=lambda t: World({"notes": {}}), graders=_grade, max_turns=4)


class ScriptPolicy:
    """Plays a fixed list of hostile actions."""

    name = "script"

    def __init__(self, turns: list[Message]) -> None:
        self.turns = turns

    async def act(self, ep) -> PolicyOutput:
        return PolicyOutput(self.turns[min(ep.turns, len(self.turns) - 1)], Usage(), {"said": self.turns[0].content})

    def describe(self) -> dict[str, Any]:
        return {"spec": "script"}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


ARGS = st.one_of(
    ANY_TEXT,
    st.dictionaries(st.sampled_from(["text", "key", "extra", "\ud800"]), st.one_of(ANY_TEXT, SCALARS), max_size=3),
    st.builds(lambda t: json.dumps({"text": t}), TEXT),
    st.builds(lambda t: json.dumps({"text": t}, ensure_ascii=True), TEXT),  # \uXXXX escapes, lone ones too
    st.just(nested(MAX_DEPTH * 3)),
)
CALL = st.builds(ToolCall, name=st.one_of(st.sampled_from(["echo", "note", "blob"]), TEXT), arguments=ARGS,
                 id=st.one_of(st.just(""), TEXT))
TURN = st.builds(lambda c, calls: Message("assistant", c, calls), ANY_TEXT, st.lists(CALL, max_size=3))


def _run(env: Environment, policy: Any, **kw: Any) -> tuple[list[bytes], list[dict[str, Any]]]:
    out = Path(tempfile.mkdtemp(prefix="robust-"))
    try:
        envfoundry.evaluate(env, model=policy, out=out / "run", limit=1, samples=2, **kw)
        lines = (out / "run" / "trajectories.jsonl").read_bytes().splitlines(keepends=True)
        recs = list(RunStore.open(out / "run").records())  # the store's own (strict) reader
        return lines, recs
    finally:
        shutil.rmtree(out, ignore_errors=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(turns=st.lists(TURN, min_size=1, max_size=3), meta=TEXT)
def test_any_action_and_tool_result_ends_typed_with_a_readable_record(turns: list[Message], meta: str) -> None:
    lines, recs = _run(_env(meta), ScriptPolicy(turns))
    assert len(lines) == len(recs) == 2
    for line, rec in zip(lines, recs, strict=True):
        assert_readable(line)
        # the tools never fail on their input and the grader always decides: nothing but a typed, scored end
        assert rec["outcome"] in ("completed", "truncated"), rec.get("error")
        assert rec["score"] == 0.5
        event("escaped" if "escaped" in rec else "as it was")


# -------------------------------------------------------------------- whole rollouts, through a model server
FAST = RetryConfig(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0, request_timeout_s=20)
REPLY_ARGS = st.one_of(ARGS, st.lists(SCALARS, max_size=3), st.integers(), st.none(), st.booleans())
REPLY_NAME = st.one_of(st.sampled_from(["echo", "note", "blob"]), TEXT, st.integers(), st.none(),
                       st.lists(st.integers(), max_size=2))
REPLY_CALL = st.one_of(
    st.builds(lambda n, a, i: {"id": i, "type": "function", "function": {"name": n, "arguments": a}},
              REPLY_NAME, REPLY_ARGS, st.one_of(TEXT, st.integers(), st.none())),
    TEXT, st.integers(), st.none(), st.builds(lambda a: {"function": a}, SCALARS),
)
TEXT_CALL = st.builds(  # the text tool protocol: a <tool_call> block, its JSON written by the model (or not)
    lambda name, args, close: f'<tool_call>{{"name": {json.dumps(name)}, "arguments": {args}}}'
    + ("</tool_call>" if close else ""),
    st.one_of(st.sampled_from(["echo", "note", "blob"]), TEXT),
    st.one_of(st.builds(json.dumps, JSONISH), TEXT, st.just("[" * 3000 + "]" * 3000)), st.booleans())
REPLY_CONTENT = st.one_of(ANY_TEXT, TEXT_CALL, st.none(), st.integers(), st.lists(st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, TEXT), SCALARS), max_size=3), JSONISH)
REPLY = st.fixed_dictionaries({"content": REPLY_CONTENT}, optional={
    "tool_calls": st.one_of(st.lists(REPLY_CALL, max_size=3), REPLY_CALL)})


def _wire(msg: dict[str, Any]) -> bytes:
    """A reply body as a server writes it: JSON, lone surrogates as escapes (valid JSON)."""
    body = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", **msg}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2**70, "completion_tokens": "many"}}
    return json.dumps(body, default=str).encode()


@pytest.fixture(scope="module")
def hostile_server():
    state: dict[str, Any] = {"reply": None}

    class Raw(StubServer):
        def _completion(self, body, reply=None):  # noqa: ANN001, ANN202
            if any(m.get("role") == "assistant" for m in body.get("messages", [])):
                return _wire({"content": "done"})  # the second turn ends the episode
            return _wire(state["reply"])

    srv = Raw(keep_requests=False)
    with srv.run_in_thread() as url:
        yield url, state


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(reply=REPLY, mode=st.sampled_from(["native", "text"]))
def test_any_server_reply_ends_typed_with_a_readable_record(hostile_server, reply: dict[str, Any], mode: str) -> None:
    url, state = hostile_server
    state["reply"] = reply
    policy = OpenAIPolicy("m", base_url=url, api_key=SECRET, retry=FAST, tool_mode=mode)  # type: ignore[arg-type]
    lines, recs = _run(_env("m"), policy, concurrency=2)
    assert len(lines) == len(recs) == 2
    for line, rec in zip(lines, recs, strict=True):
        assert_readable(line)
        assert rec["outcome"] in ("completed", "truncated"), rec.get("error")
        assert all(isinstance(v, int) and v >= 0 for v in rec["usage"].values())  # nonsense counts read as 0
        info = rec["policy_info"][0]
        event("escaped by the policy" if "escaped" in info else "as the server sent it")


def test_a_reply_whose_arguments_escape_a_lone_surrogate_reaches_no_tool_unescaped() -> None:
    """The case of the issue: ``{"query": "\\ud800"}`` as arguments text; the tool receives the
    escape as text, the turn's policy info says so, and the request after it encodes."""
    seen: list[str] = []

    @tool
    def search(ep, query: str) -> str:
        """Search."""
        query.encode("utf-8")  # a tool that encodes its input: would fail on a lone surrogate
        seen.append(query)
        return f"no results for {query}"

    env = Environment(name="s", version="1", tools=[search], graders=lambda g: Score(1.0), max_turns=3,
                      tasks=lambda split, seed: [Task(env="s", env_version="1", split="test", prompt="find")])

    def reply(body: dict[str, Any]) -> Any:
        if any(m["role"] == "tool" for m in body["messages"]):
            return "done"
        args = '{"query": "\\ud800 and \\ud83d\\ude00"}'
        return {"tool_calls": [{"function": {"name": "search", "arguments": args}}]}

    with StubServer(reply=reply).run_in_thread() as url:
        lines, recs = _run(env, OpenAIPolicy("m", base_url=url, retry=FAST))
    assert [r["outcome"] for r in recs] == ["completed", "completed"]
    assert seen == ["\\ud800 and \U0001f600"] * 2  # the lone one escaped, the valid pair decoded
    assert recs[0]["policy_info"][0]["escaped"] == ["tool_calls.0.arguments"]


def test_the_store_escapes_what_a_tool_returns() -> None:
    @tool
    def weird(ep) -> str:
        """A tool whose result cannot be encoded."""
        return "bytes decoded with surrogateescape: " + b"\xff\xfe".decode("utf-8", "surrogateescape")

    env = Environment(name="w", version="1", tools=[weird], graders=lambda g: Score(1.0), max_turns=2,
                      tasks=lambda split, seed: [Task(env="w", env_version="1", split="test", prompt="go")])
    turns = [Message("assistant", "", [ToolCall("weird", {})]), Message("assistant", "x")]
    lines, recs = _run(env, ScriptPolicy(turns))
    rec = recs[0]
    assert rec["outcome"] == "completed"
    assert rec["messages"][-2]["content"].endswith("\\udcff\\udcfe")
    assert rec["escaped"] == ["messages.2.content"]  # the tool result, after the prompt and the call


# -------------------------------------------------------------------- the fault-injecting server, end to end
@pytest.mark.parametrize(("workers", "huge"), [("1", 10 * 1024 * 1024), ("2", 1024 * 1024)])
def test_a_run_against_a_hostile_server_ends_typed_and_resumes_with_nothing_to_do(tmp_path, workers, huge):
    """Lone surrogates, NUL bytes, a 10 MB argument string, arguments 100,000 levels deep and
    arguments that are not an object, in turn: every rollout ends completed, truncated or
    policy_error, the exit code follows the outcome, and ``--resume`` sends no request."""
    from envfoundry.testing.stub_server import HOSTILE_SEQUENCE
    from tests.conftest import cli

    first_turns = iter(range(10**9))

    def mode(i: int, body: dict[str, Any]) -> str:
        if any(m.get("role") == "tool" for m in body.get("messages", [])):
            return "ok"  # after the hostile call: a plain answer ends the episode
        return HOSTILE_SEQUENCE[next(first_turns) % len(HOSTILE_SEQUENCE)]

    run = tmp_path / "run"
    srv = StubServer(mode, reply="I am done.", huge_bytes=huge, keep_requests=False)
    with srv.run_in_thread() as url:
        r = cli("run", "shop", "--model", "openai:stub", "--base-url", url, "--limit", "5", "--samples", "2",
                "--workers", workers, "--concurrency", "4", "--out", str(run), "-q", timeout=300)
        assert "Traceback" not in r.stderr, r.stderr
        assert all(srv.served[m] == 2 for m in HOSTILE_SEQUENCE), srv.served
        lines = (run / "trajectories.jsonl").read_bytes().splitlines(keepends=True)
        recs = [assert_readable(x) for x in lines]
        assert len(recs) == 10 and all(record_problem(x) is None for x in recs)
        outcomes = [x["outcome"] for x in recs]
        # the model's output is data: every episode goes on (the tools answer with errors) and is scored
        assert set(outcomes) <= {"completed", "truncated"}, [x.get("error") for x in recs]
        assert r.returncode == 0, r.stderr  # no errored rollout: the run succeeded
        summary = json.loads((run / "summary.json").read_text())
        assert summary["n_trajectories"] == 10 and summary["n_errors"] == 0 and summary["complete"]
        # what the model sent is kept, escaped where it had to be, and the record says so
        text = b"".join(lines).decode()
        assert "\\\\ud800" in text and "\\u0000" in text
        assert sum("escaped" in info for x in recs for info in x.get("policy_info", [])) == 2
        assert max(len(x) for x in lines) > huge  # the huge argument is stored, not dropped
        before, n = (run / "trajectories.jsonl").read_bytes(), srv.n_requests
        r2 = cli("run", "--out", str(run), "--resume", "-q", timeout=120)
        assert r2.returncode == 0, r2.stderr
        assert srv.n_requests == n and (run / "trajectories.jsonl").read_bytes() == before  # nothing left to do
    # and every reader reads it
    assert cli("show", str(run)).returncode == 0
    r = cli("export", str(run), str(tmp_path / "x.jsonl"))
    assert r.returncode == 0 and "wrote 10 rows" in r.stdout, r.stderr


def test_error_causes_that_differ_only_in_numbers_are_one_cause_and_the_others_stay_apart():
    from envfoundry.rollout.summary import MAX_CAUSES, OTHER_CAUSES, Summary

    s = Summary()
    errors = [f"TimeoutError: rollout timed out after {t}s" for t in (3.2, 3.4, 12)] + \
             ["ConnectionRefusedError: 127.0.0.1:8123", "ConnectionRefusedError: 127.0.0.1:9001",
              "KeyError: 'sku'", "ValueError: bad sku 0xdeadbeef"]
    for e in errors:
        s.add({"task_id": "t", "outcome": "env_error", "error": e})
    causes = dict(s.result(samples=1)["error_causes"])
    assert causes == {"TimeoutError: rollout timed out after 3.2s (and similar)": 3,
                      "ConnectionRefusedError: 127.0.0.1:8123 (and similar)": 2,
                      "KeyError: 'sku'": 1, "ValueError: bad sku 0xdeadbeef": 1}
    many = Summary()  # distinct kinds beyond the cap are counted together
    for i in range(MAX_CAUSES + 5):
        many.add({"task_id": "t", "outcome": "policy_error", "error": f"Error kind {chr(65 + i % 26)}{i // 26 * 'x'}"})
    assert dict(many.result(samples=1)["error_causes"]).get(OTHER_CAUSES) == 5
