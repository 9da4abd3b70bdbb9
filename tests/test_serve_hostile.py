"""Served environments under cases the happy path does not meet: task data JSON cannot hold, a foreign task,
two requests at once on one session, an environment that blocks, a client that vanishes, buggy graders and
resets, the client's own turn limit. Each server here is real (uvicorn on 127.0.0.1), run on a thread of
the test process."""

import asyncio
import contextlib
import json
import threading
import time

import aiohttp
import pytest

import envfoundry
from envfoundry import Environment, Message, Score, Task, tool
from envfoundry.server.app import make_app
from envfoundry.server.config import ServeConfig
from envfoundry.server.run import bind, url_of
from tests.conftest import TEST_ENVS
from tests.envs import slow
from tests.test_serve import http


@contextlib.contextmanager
def serving(env: Environment, **config):
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(make_app(env, ServeConfig(**config)), log_level="warning",
                                           lifespan="on", ws_per_message_deflate=False))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.01)
    try:
        yield url_of(sock, "127.0.0.1")
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()


def _records(run):
    return {(r["task_id"], r["sample"]): r for r in run.records()}


def test_task_data_json_cannot_hold_stays_on_the_server(tmp_path):
    """Task data holding Python objects reaches the client as text; the server grades with the real objects."""
    env = slow.make_blob()
    with serving(env) as url, envfoundry.connect(url) as remote:
        task = remote.tasks("test")[3]
        assert task.id == env.tasks("test")[3].id and isinstance(task.data["blob"], str)
        run = envfoundry.evaluate(remote, model="scripted:oracle", out=tmp_path / "r", limit=5)
        assert run.summary["pass_rate"] == 1.0


def test_a_foreign_task_is_refused_by_name():
    env = slow.make_buggy_tool()
    with serving(env) as url:
        other = Task(env="elsewhere", env_version="9", split="test", prompt="hi").model_dump()
        st, body, _ = http("POST", url + "/sessions", {"task": other})
        assert (st, body["code"]) == (422, "malformed") and "elsewhere" in body["message"]
        st, body, _ = http("POST", url + "/sessions", {"task": {**other, "id": "0" * 16}})
        assert st == 422 and "content" in body["message"]  # an id that is not its content's hash


@tool
def nap(ep, seconds: float) -> str:
    """Sleep (an environment that blocks: I/O, a subprocess)."""
    time.sleep(seconds)
    return "rested"


def _napper() -> Environment:
    return Environment(name="napper", version="1", tools=[nap], max_turns=50,
                       tasks=lambda split, seed: [Task(split=split, prompt=f"rest {i}") for i in range(4)],
                       graders=lambda g: Score(1.0))


def test_one_request_at_a_time_per_session_and_a_blocking_env_moves_to_threads():
    with serving(_napper(), threads=4) as url:
        async def go():
            async with aiohttp.ClientSession() as s:
                async def post(path, body):
                    async with s.post(url + path, json=body) as r:
                        return r.status, await r.json()

                _, a = await post("/sessions", {"index": 0})
                _, b = await post("/sessions", {"index": 1})
                nap_call = {"tool_calls": [{"name": "nap", "arguments": {"seconds": 0.02}}]}
                for _ in range(3):  # three slow steps: environment code goes to worker threads
                    assert (await post(f"/sessions/{a['session_id']}/step", nap_call))[0] == 200
                async with s.get(url + "/info") as r:
                    assert (await r.json())["env_code_runs"] == "on worker threads"
                long_nap = {"tool_calls": [{"name": "nap", "arguments": {"seconds": 0.6}}]}
                done: list[str] = []

                async def slow_step():
                    st, body = await post(f"/sessions/{a['session_id']}/step", long_nap)
                    done.append("slow")
                    return st, body

                async def second_on_same():
                    await asyncio.sleep(0.1)
                    return await post(f"/sessions/{a['session_id']}/step", {"content": "x"})

                async def other_session():
                    await asyncio.sleep(0.1)
                    st, body = await post(f"/sessions/{b['session_id']}/reset", {"index": 2})
                    done.append("other")
                    return st

                (st1, _), (st2, body2), st3 = await asyncio.gather(slow_step(), second_on_same(), other_session())
                assert st1 == 200 and st3 == 200
                assert (st2, body2["code"]) == (409, "session_busy")
                assert done == ["other", "slow"]  # the blocked session held up no one else

        asyncio.run(go())


def test_a_vanished_websocket_client_frees_its_session():
    env = slow.make_buggy_tool()
    with serving(env) as url:
        async def go():
            async with aiohttp.ClientSession() as s:
                ws = await s.ws_connect(url + "/ws")
                await ws.send_json({"type": "reset", "data": {"index": 0}})
                await ws.receive_json()
                assert http("GET", url + "/info")[1]["open_sessions"] == 1
                ws._response.connection.transport.abort()  # no close frame: the client is just gone
            for _ in range(200):
                if http("GET", url + "/info")[1]["open_sessions"] == 0:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the session of a vanished client stayed open")

        asyncio.run(go())


@pytest.mark.parametrize("factory,outcome,needle", [
    (slow.make_buggy_grader, "grader_error", "grader bug"),
    (slow.make_buggy_reset, "env_error", "world factory bug"),
])
def test_server_side_bugs_are_typed_outcomes_with_their_message(tmp_path, factory, outcome, needle):
    with serving(factory()) as url, envfoundry.connect(url) as remote:
        run = envfoundry.evaluate(remote, model="scripted:oracle", out=tmp_path / "r", limit=2)
        recs = list(run.records())
        assert [r["outcome"] for r in recs] == [outcome] * 2
        assert all(r["score"] is None and needle in r["error"] for r in recs)


def test_the_clients_own_turn_limit_truncates_and_grades_like_a_local_run(tmp_path):
    bank = envfoundry.load(f"{TEST_ENVS / 'fair_bank.py'}:make_env")
    with serving(bank) as url, envfoundry.connect(url) as remote:
        mine = _records(envfoundry.evaluate(remote, model="scripted:oracle", out=tmp_path / "r", limit=3,
                                            max_turns=2))
    theirs = _records(envfoundry.evaluate(bank, model="scripted:oracle", out=tmp_path / "l", limit=3, max_turns=2))
    assert {k: r["outcome"] for k, r in mine.items()} == {k: "truncated" for k in theirs}
    for k, r in theirs.items():
        assert (mine[k]["score"], mine[k]["messages"], mine[k].get("world_diff")) == \
               (r["score"], r["messages"], r.get("world_diff"))


def test_mutations_and_content_hash_come_from_the_server():
    from envfoundry.server.catalog import content_hash

    math = envfoundry.load("math")
    with serving(math) as url, envfoundry.connect(url) as remote:
        task = remote.tasks("test")[0]
        ep = math.reset(math.tasks("test")[0], seed=0)
        actions = [math.reference_action(ep)]
        got = [(n, [a.to_dict() for a in acts], k) for n, acts, k in remote.mutations(task, actions)]
        want = [(n, [a.to_dict() for a in acts], k) for n, acts, k in math.mutations(task, actions)]
        assert got == want and got
        for _ in range(400):
            h = http("GET", url + "/info")[1]["content_hash"]
            if h:
                break
            time.sleep(0.05)
        assert h == content_hash(math)[0] and h.startswith("sha256:")


def test_text_of_any_kind_survives_the_wire():
    env = slow.make_buggy_tool()
    text = 'emoji \U0001f600, NUL \x00, "quotes", \\backslash, \u2028 line separator, \ud7ff'
    with serving(env) as url, envfoundry.connect(url) as remote:
        ep = remote.reset(remote.tasks("test")[0], seed=1)
        ep.step(Message("assistant", text))
        assert ep.terminated and ep.messages[-1].content == text
        assert remote.grade(ep).value == 1.0
        st, body, _ = http("POST", url + "/sessions", raw=json.dumps([1, 2]).encode())
        assert st == 422
