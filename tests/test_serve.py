"""`envfoundry serve` and its client: a real server on 127.0.0.1 (a subprocess), driven by run, check and
audit through its URL, by `envfoundry.connect`, by raw HTTP and WebSocket requests, and by OpenEnv's own client."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

import envfoundry
from envfoundry import Message, ToolCall
from envfoundry.server.catalog import content_hash
from tests.conftest import ROOT, TEST_ENVS, cli

TOKEN = "test-token-0123456789"
BANK = f"{TEST_ENVS / 'fair_bank.py'}:make_env"
BUGGY = f"{TEST_ENVS / 'slow.py'}:make_buggy_tool"


def start_server(*args: str, env: dict | None = None, port: int = 0) -> tuple[subprocess.Popen, str]:
    """`envfoundry serve ARGS` on 127.0.0.1 (a free port unless given); returns it and its URL."""
    p = subprocess.Popen([sys.executable, "-m", "envfoundry", "serve", *args, "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})})
    line = p.stdout.readline()  # the first line names the URL, once the socket listens
    m = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not m:
        p.kill()
        raise AssertionError(f"server did not start: {line!r} {p.stderr.read()[-2000:]}")
    return p, m.group(0)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def servers():
    """A fair bank behind a token, and a buggy tool with room for 4 sessions and 1.5 s leases."""
    bank = start_server(BANK, "--token-env", "SERVE_TEST_TOKEN", env={"SERVE_TEST_TOKEN": TOKEN})
    buggy = start_server(BUGGY, "--max-sessions", "4", "--lease-s", "1.5")
    yield {"bank": bank[1], "buggy": buggy[1]}
    for p in (bank[0], buggy[0]):
        stop(p)


def http(method: str, url: str, body=None, token: str | None = None, raw: bytes | None = None):
    """(status, JSON body, headers) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None), dict(r.headers)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None), dict(e.headers)


def client_env() -> dict:
    return {"ENVFOUNDRY_TOKEN": TOKEN}


# ------------------------------------------------------------------ run, check and audit through the URL
def test_run_check_and_audit_through_the_url(servers, tmp_path):
    url = servers["bank"]
    env = {**os.environ, **client_env(), "COLUMNS": "200"}
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", url, "--model", "scripted:oracle", "--limit", "4",
                        "--samples", "2", "--out", str(out), "-q"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and all(x["outcome"] == "completed" and x["score"] == 1.0 for x in recs)
    # graded on the server: the world's diff comes back with each record (the deposit changed a balance)
    assert all(any(c["table"] == "accounts" for c in x["world_diff"]) for x in recs), recs[0].get("world_diff")
    assert json.loads((out / "manifest.json").read_text())["env_spec"] == url

    # the same records as the environment run here, in this process (same seeds)
    local = tmp_path / "local"
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", BANK, "--model", "scripted:oracle", "--limit", "4",
                        "--samples", "2", "--out", str(local), "-q"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    mine = {(x["task_id"], x["sample"]): (x["seed"], x["score"], x["messages"], x["world_diff"]) for x in recs}
    theirs = {(x["task_id"], x["sample"]): (x["seed"], x["score"], x["messages"], x["world_diff"])
              for x in map(json.loads, (local / "trajectories.jsonl").read_text().splitlines())}
    assert mine == theirs

    r = subprocess.run([sys.executable, "-m", "envfoundry", "check", url, "--limit", "4", "--samples", "1", "--json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["env"] == "fairbank"
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["solvable"] == status["fork_isolation"] == status["grader_pure"] == status["bad_calls"] == "pass"

    r = subprocess.run([sys.executable, "-m", "envfoundry", "audit", url, "--limit", "3", "--samples", "1",
                        "--out", str(tmp_path / "audit"), "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    audit = json.loads(r.stdout)
    assert audit["env"] == "fairbank" and audit["probes"], audit.keys()


def test_workers_load_the_environment_by_its_url(servers, tmp_path):
    env = {**os.environ, **client_env()}
    out = tmp_path / "w"
    r = subprocess.run([sys.executable, "-m", "envfoundry", "run", servers["bank"], "--model", "scripted:oracle",
                        "--limit", "4", "--workers", "2", "--concurrency", "4", "--out", str(out), "-q"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(x["outcome"] for x in recs) == ["completed"] * 4


def test_connect_gives_an_environment_like_a_local_one(servers, tmp_path):
    local = envfoundry.load(BANK)
    with envfoundry.connect(servers["bank"], token=TOKEN) as env:
        assert isinstance(env, envfoundry.Environment) and env.asynchronous
        assert (env.name, env.version, env.splits, env.max_turns) == (local.name, local.version, local.splits, 8)
        assert env.tool_schemas() == local.tool_schemas()
        assert {t.name: t.writes for t in env.tools.values()} == {t.name: t.writes for t in local.tools.values()}
        assert [t.id for t in env.tasks("test")] == [t.id for t in local.tasks("test")]
        assert env.has_reference and env.loaded_from == (servers["bank"], {})
        for _ in range(100):  # the content hash is computed on a thread of the server's own
            info = http("GET", servers["bank"] + "/info", token=TOKEN)[1]
            if info["content_hash"] is not None:
                break
            time.sleep(0.05)
        assert info["content_hash"] == content_hash(local)[0]  # the hub's rule: the scorecard's hash too
        assert info["split_sizes"] == {s: len(local.tasks(s)) for s in local.splits}

        # synchronous use (what check and audit do): the world is mirrored, step by step
        task = env.tasks("test")[1]
        ep, lep = env.reset(task, seed=5), local.reset(task, seed=5)
        assert ep.world_before.hash() == lep.world_before.hash()
        while not (ep.terminated or ep.truncated):
            a = env.reference_action(ep)
            la = local.reference_action(lep)
            assert a.to_dict() == la.to_dict()
            r, lr = ep.step(a), lep.step(la)
            assert [m.to_dict() for m in r.observation] == [m.to_dict() for m in lr.observation]
            assert ep.world.hash() == lep.world.hash()
        assert env.grade(ep) == local.grade(lep)
        assert ep.world_diff_dicts() == lep.world_diff_dicts()
        with pytest.raises(RuntimeError, match="finished episode"):
            ep.step(Message("assistant", "again"))

        # evaluate() takes it as it is, and grades on the server
        run = envfoundry.evaluate(env, model="scripted:oracle", out=tmp_path / "eval", limit=3, samples=2)
        assert run.summary["pass_rate"] == 1.0 and run.summary["n_trajectories"] == 6


def test_token_is_required_everywhere_but_health(servers, tmp_path):
    url = servers["bank"]
    assert http("GET", url + "/info")[0] == 401
    status, body, headers = http("GET", url + "/info", token="wrong-token-xxxxxxxx")
    assert status == 401 and body["code"] == "unauthorized" and "Bearer" in body["message"]
    assert headers.get("www-authenticate") == "Bearer"
    assert http("POST", url + "/sessions", {}, token=None)[0] == 401
    assert http("GET", url + "/health")[0] == 200
    assert http("GET", url + "/info", token=TOKEN)[0] == 200

    async def ws_without_token():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(url + "/ws")
            return e.value.status

    assert asyncio.run(ws_without_token()) == 401
    with pytest.raises(envfoundry.EnvfoundryError, match="401"):
        envfoundry.connect(url, token="")
    r = cli("run", url, "--model", "scripted:oracle", "--limit", "1", "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "401" in r.stderr


def test_remote_binding_needs_a_flag_and_a_token(tmp_path):
    r = cli("serve", "math", "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2 and "--allow-remote" in r.stderr
    r = cli("serve", "math", "--host", "0.0.0.0", "--port", "0", "--allow-remote")
    assert r.returncode == 2 and "--token-env" in r.stderr
    r = cli("serve", "math", "--port", "0", "--token-env", "SURELY_UNSET_VAR_XYZ")
    assert r.returncode == 2 and "SURELY_UNSET_VAR_XYZ" in r.stderr


# ------------------------------------------------------------------ bad input: a specific 4xx, the others go on
class _Good:
    """A WebSocket session that must keep working while another session is refused."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def episode(self, ws) -> None:
        await ws.send_json({"type": "reset", "data": {"index": 2, "seed": 3}})
        first = await ws.receive_json()
        assert first["type"] == "observation" and not first["data"]["done"], first
        await ws.send_json({"type": "step", "data": {"content": "2"}})
        last = await ws.receive_json()
        assert last["data"]["done"] and last["data"]["outcome"] == "completed" and last["data"]["reward"] == 1.0


def test_bad_input_gets_its_own_4xx_and_other_sessions_go_on(servers):
    url = servers["buggy"]

    async def go():
        good = _Good(url)
        async with aiohttp.ClientSession() as s, s.ws_connect(url + "/ws") as ws:
            await good.episode(ws)
            # unknown session
            st, body, _ = http("POST", url + "/sessions/nope/step", {"content": "x"})
            assert (st, body["code"]) == (404, "unknown_session") and "nope" in body["message"]
            await good.episode(ws)
            # unknown task id (HTTP and WebSocket), unknown split
            st, body, _ = http("POST", url + "/sessions", {"task_id": "0123456789abcdef"})
            assert (st, body["code"]) == (404, "unknown_task") and "0123456789abcdef" in body["message"]
            st, body, _ = http("GET", url + "/tasks?split=nosuch")
            assert (st, body["code"]) == (404, "unknown_split") and "train, test" in body["message"]
            await ws.send_json({"type": "reset", "data": {"task_id": "feedfeedfeedfeed"}})
            err = await ws.receive_json()
            assert err["type"] == "error" and err["data"]["status"] == 404 and err["data"]["code"] == "unknown_task"
            await good.episode(ws)
            # malformed bodies: not JSON, wrong types, unknown fields (HTTP and WebSocket)
            st, body, _ = http("POST", url + "/sessions", raw=b"{not json")
            assert st == 422 and body["code"] == "malformed"
            st, body, _ = http("POST", url + "/sessions", {"seed": -1})
            assert st == 422 and "seed" in body["message"]
            st, sess, _ = http("POST", url + "/sessions", {"index": 0})
            assert st == 201 and sess["lease_s"] == 1.5
            sid = sess["session_id"]
            st, body, _ = http("POST", f"{url}/sessions/{sid}/step", {"tool_calls": "explode"})
            assert st == 422 and "tool_calls" in body["message"]
            st, body, _ = http("POST", f"{url}/sessions/{sid}/step", {"content": "x", "reward": 1})
            assert st == 422 and "reward" in body["message"]
            await ws.send_str("{not json")
            assert (await ws.receive_json())["data"]["code"] == "malformed"
            await ws.send_json({"type": "teleport"})
            err = await ws.receive_json()
            assert err["data"]["status"] == 400 and "teleport" in err["data"]["message"]
            await ws.send_json({"type": "step", "data": {"role": "user", "content": "hi"}})
            assert "assistant" in (await ws.receive_json())["data"]["message"]
            await good.episode(ws)
            # step after the episode ended
            st, body, _ = http("POST", f"{url}/sessions/{sid}/step", {"content": "0"})
            assert st == 200 and body["done"] and body["outcome"] == "completed"
            st, body, _ = http("POST", f"{url}/sessions/{sid}/step", {"content": "0"})
            assert (st, body["code"]) == (409, "episode_ended") and "reset" in body["message"]
            # the environment's own exception: an env_error with its message, never a dropped connection
            st, body, _ = http("POST", f"{url}/sessions/{sid}/reset", {"index": 1})
            assert st == 200
            st, body, _ = http("POST", f"{url}/sessions/{sid}/step",
                               {"tool_calls": [{"name": "explode", "arguments": {"n": 3}}]})
            assert st == 200 and body["outcome"] == "env_error" and "ZeroDivisionError" in body["error"]
            assert body["reward"] is None and "score" not in body
            st, state, _ = http("GET", f"{url}/sessions/{sid}")
            assert st == 200 and state["outcome"] == "env_error" and state["done"]
            await good.episode(ws)
            # an expired lease: 410, not 404
            time.sleep(1.8)
            await good.episode(ws)  # a WebSocket's lease is its connection: it never idles out
            st, body, _ = http("POST", f"{url}/sessions/{sid}/step", {"content": "x"})
            assert (st, body["code"]) == (410, "lease_expired") and "1.5s" in body["message"]
            st, _, _ = http("DELETE", f"{url}/sessions/{sid}")
            assert st == 410
            await good.episode(ws)

    asyncio.run(go())


def test_full_server_answers_503_with_retry_after_and_frees_a_closed_session(servers):
    url = servers["buggy"]
    sids = []
    try:
        while True:  # fill the server (4 sessions; an earlier test's may still be open)
            st, body, headers = http("POST", url + "/sessions", {"index": 0})
            if st != 201:
                break
            sids.append(body["session_id"])
            assert len(sids) <= 4
        assert st == 503 and body["code"] == "server_full" and int(headers["retry-after"]) >= 1
        assert "4 sessions" in body["message"]

        async def ws_refused():
            async with aiohttp.ClientSession() as s:
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await s.ws_connect(url + "/ws")
                return e.value.status, e.value.headers.get("Retry-After")

        assert asyncio.run(ws_refused()) == (503, "1")
        assert http("DELETE", f"{url}/sessions/{sids.pop()}")[0] == 204
        st, body, _ = http("POST", url + "/sessions", {"index": 0})
        assert st == 201
        sids.append(body["session_id"])
    finally:
        for sid in sids:
            http("DELETE", f"{url}/sessions/{sid}")


def test_env_errors_reach_the_records_as_env_error(servers, tmp_path):
    """A tool's bug on the server is the rollout's env_error with the server's message; never a score."""
    out = tmp_path / "bug"
    r = cli("run", servers["buggy"], "--model", "scripted:oracle", "--limit", "2", "--out", str(out), "-q")
    assert r.returncode == 1
    recs = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert [x["outcome"] for x in recs] == ["env_error", "env_error"]
    assert all(x["score"] is None and "ZeroDivisionError" in x["error"] and "explode" in x["error"] for x in recs)


def test_http_session_round_trip_and_openapi(servers):
    url = servers["buggy"]
    st, spec, _ = http("GET", url + "/openapi.json")
    assert st == 200 and {"/sessions", "/sessions/{sid}/step", "/tasks", "/info"} <= set(spec["paths"])
    st, page, _ = http("GET", url + "/tasks?split=test&limit=2&offset=1")
    assert st == 200 and page["total"] == 5 and len(page["tasks"]) == 2 and page["tasks"][0]["prompt"] == "say 1"
    task = page["tasks"][1]
    st, s, _ = http("POST", url + "/sessions", {"task_id": task["id"], "seed": 4})
    assert st == 201 and s["task_id"] == task["id"] and s["observation"]["messages"][-1]["content"] == "say 2"
    st, ref, _ = http("POST", f"{url}/sessions/{s['session_id']}/reference")
    assert st == 200 and ref["action"]["tool_calls"][0]["name"] == "explode"
    st, out, _ = http("POST", f"{url}/sessions/{s['session_id']}/step", {"content": "bye"})
    assert out["done"] and out["score"]["value"] == 1.0 and out["outcome"] == "completed"
    st, again, _ = http("POST", f"{url}/sessions/{s['session_id']}/grade")
    assert st == 200 and again["score"] == out["score"]
    assert http("DELETE", f"{url}/sessions/{s['session_id']}")[0] == 204
    st, body, _ = http("GET", f"{url}/sessions/{s['session_id']}")
    assert (st, body["code"]) == (410, "session_closed")
    # a whole task instead of an id: the server's environment takes it (its ids are content hashes)
    st, s2, _ = http("POST", url + "/sessions", {"task": {**task, "prompt": "say 42", "id": ""}})
    assert st == 201 and s2["task_id"] != task["id"]
    http("DELETE", f"{url}/sessions/{s2['session_id']}")


def test_a_served_tool_call_keeps_its_id_and_the_client_sees_tool_results(servers):
    env = envfoundry.connect(servers["buggy"])
    try:
        ep = env.reset(env.tasks("test")[0], seed=0)
        call = ToolCall("no_such_tool", {})
        r = ep.step(Message("assistant", "", [call]))
        assert call.id == "call_1_0" and r.observation[0].tool_call_id == "call_1_0"
        assert "unknown tool 'no_such_tool'" in r.observation[0].content and not (r.terminated or r.truncated)
    finally:
        env.close()


def test_trainings_reward_path_scores_a_served_environment_like_a_local_one(servers):
    """`train` reaches an environment through EnvAdapter (reset, step, grade per completion): through a
    URL it gives the rewards and outcome tallies of the same environment loaded locally."""
    from envfoundry.train.trl_adapter import EnvAdapter

    local = envfoundry.load(BANK)
    tasks = list(local.tasks("test"))[:2]
    texts = ["hello", "I am done", "x" * 30, ""]
    ids = [tasks[0].id, tasks[0].id, tasks[1].id, tasks[1].id]
    want = EnvAdapter(local, tasks, group_size=2)
    with envfoundry.connect(servers["bank"], token=TOKEN) as env:
        remote_tasks = [t for t in env.tasks("test") if t.id in {t.id for t in tasks}]
        got = EnvAdapter(env, remote_tasks, group_size=2)
        assert got.score_batch(list(texts), task_id=ids) == want.score_batch(list(texts), task_id=ids)
    assert dict(got.totals) == dict(want.totals) and got.totals["completed"] == 4  # graded, no errors
