"""Serving benchmarks: reset+step pairs per second through `envfoundry serve` against the same environment in
process, and against OpenEnv's echo environment on the same machine (figures, not assertions).

    python bench/bench_serve.py [--seconds 1] [--rounds 3] [--idle 500]

Prints, measured in this run, at 1, 16 and 64 concurrent sessions (each session one client loop:
reset, then one step that echoes a message through a tool; the next reset starts a new episode):
- in process: ``env.reset`` + ``ep.step`` called directly (no server): the baseline;
- envfoundry over WebSocket (``/ws``, one connection per session) and over HTTP (``POST /sessions/{id}/reset``
  and ``/step``, kept-alive connections), with the same raw aiohttp client loop;
- envfoundry's own client (``envfoundry.connect``: ``areset`` + ``astep``, what the engine calls);
- OpenEnv 0.10's echo environment (``openenv init echo_env``, served by OpenEnv's ``create_app``) over its
  WebSocket, with the same client loop, where openenv is installed;
- the server's memory per idle session: its RSS before and after opening ``--idle`` WebSocket sessions
  that each hold an episode, divided by their number (and the same for OpenEnv).
Both servers run on uvicorn with the same settings (one process, no access log, no per-message deflate);
the client runs in this process, so client and server share the machine's cores.
Goal (issue 21): >= 3x OpenEnv's WebSocket rate at 64 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from envfoundry import Environment, Message, Score, Task, ToolCall, tool

HERE = Path(__file__).resolve()
LEVELS = (1, 16, 64)


# ------------------------------------------------------------------ the benchmark's environment (served too)
@tool
def echo(ep, message: str) -> str:
    """Echo the message back."""
    return message


def make_echo() -> Environment:
    """An echo environment: a tool that returns its message; the answer "done" ends an episode."""
    def tasks(split: str, seed: int) -> list[Task]:
        return [Task(split=split, prompt=f"echo {i}", data={"i": i}) for i in range(64)]

    return Environment(name="echo", version="1", tasks=tasks, tools=[echo], max_turns=1000,
                       graders=lambda g: Score(1.0 if g.final == "done" else 0.0))


ACTION = Message("assistant", "", [ToolCall("echo", {"message": "hello"})])
STEP = {"tool_calls": [{"name": "echo", "arguments": {"message": "hello"}}]}


# ------------------------------------------------------------------ servers
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_envfoundry(threads: int) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "envfoundry", "serve", f"{HERE}:make_echo", "--port", "0",
                          "--max-sessions", "4096", "--env-threads", str(threads)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"http://\S+", p.stdout.readline())
    assert m, "envfoundry serve did not start"
    return p, m.group(0)


OPENENV_APP = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from openenv.core.env_server.http_server import create_app
from echo_env.models import EchoAction, EchoObservation
from echo_env.server.echo_env_environment import EchoEnvironment
app = create_app(EchoEnvironment, EchoAction, EchoObservation, env_name="echo_env", max_concurrent_envs=4096)
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False, ws_per_message_deflate=False)
"""


def start_openenv(tmp: Path) -> tuple[subprocess.Popen, str] | None:
    """OpenEnv's echo environment, made by `openenv init echo_env` (its template), or None without openenv."""
    exe = shutil.which("openenv") or str(Path(sys.executable).parent / "openenv")
    try:
        import openenv  # noqa: F401
    except ImportError:
        return None
    r = subprocess.run([exe, "init", "echo_env", "--output-dir", str(tmp)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  (openenv init failed: {r.stderr.strip()[-200:]})")
        return None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-c", OPENENV_APP.format(root=str(tmp), port=port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return p, url
        time.sleep(0.1)
    p.kill()
    return None


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


# ------------------------------------------------------------------ client loops
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def measure(n: int, seconds: float, open_session: Callable[[int], Awaitable[Callable[[], Awaitable[None]]]],
                  pid: int | None = None) -> tuple[float, float | None]:
    """(pairs per second of ``n`` concurrent loops, the server's CPU microseconds per pair); each loop's
    pair is what ``open_session(i)`` returns."""
    pairs = [await open_session(i) for i in range(n)]
    count = 0
    measuring = False
    stop_at = 0.0

    async def loop(pair: Callable[[], Awaitable[None]]) -> None:
        nonlocal count
        while True:
            await pair()
            if measuring:
                if time.perf_counter() >= stop_at:
                    return
                count += 1

    tasks = [asyncio.ensure_future(loop(p)) for p in pairs]
    await asyncio.sleep(min(0.5, seconds / 4))  # warm up
    c0 = cpu_s(pid) if pid else 0.0
    measuring, t0 = True, time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*tasks)
    dt = time.perf_counter() - t0
    per_pair = (cpu_s(pid) - c0) / count * 1e6 if pid and count else None
    return count / dt, per_pair


async def ws_rate(url: str, n: int, seconds: float, *, openenv: bool,
                  pid: int | None = None) -> tuple[float, float | None]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        socks = []

        async def open_session(i: int):
            ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws", compress=0)
            socks.append(ws)
            reset = {"type": "reset", "data": {} if openenv else {"index": i % 64, "seed": i}}
            step = {"type": "step", "data": {"message": "hello"} if openenv else STEP}

            async def pair() -> None:
                await ws.send_json(reset)
                r = await ws.receive_json()
                assert r["type"] == "observation", r
                await ws.send_json(step)
                r = await ws.receive_json()
                assert r["type"] == "observation", r

            return pair

        try:
            return await measure(n, seconds, open_session, pid)
        finally:
            for ws in socks:
                await ws.close()


async def http_rate(url: str, n: int, seconds: float, pid: int | None = None) -> tuple[float, float | None]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sids = []

        async def open_session(i: int):
            async with http.post(url + "/sessions", json={"index": i % 64, "seed": i}) as r:
                sid = (await r.json())["session_id"]
            sids.append(sid)
            body = {"index": i % 64, "seed": i}

            async def pair() -> None:
                async with http.post(f"{url}/sessions/{sid}/reset", json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                async with http.post(f"{url}/sessions/{sid}/step", json=STEP) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            return pair

        try:
            return await measure(n, seconds, open_session, pid)
        finally:
            for sid in sids:
                async with http.delete(f"{url}/sessions/{sid}"):
                    pass


async def client_rate(url: str, n: int, seconds: float, pid: int | None = None) -> tuple[float, float | None]:
    import envfoundry

    env = await asyncio.to_thread(envfoundry.connect, url)
    tasks = await asyncio.to_thread(lambda: list(env.tasks("test")))
    try:
        async def open_session(i: int):
            async def pair() -> None:
                ep = await env.areset(tasks[i % 64], seed=i)
                await ep.astep(ACTION)
                await ep.aclose()

            return pair

        return await measure(n, seconds, open_session, pid)
    finally:
        await asyncio.to_thread(env.close)


def in_process_rate(seconds: float) -> float:
    env = make_echo()
    tasks = env.tasks("test")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(64):
            ep = env.reset(tasks[i], seed=i)
            ep.step(Message("assistant", "", [ToolCall("echo", {"message": "hello"})]))
        n += 64
    return n / (time.perf_counter() - t0)


async def idle_kb(url: str, pid: int, n: int, *, openenv: bool) -> float:
    """The server's RSS growth per idle WebSocket session holding an episode (KiB)."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.sleep(0.3)
        before = rss_kb(pid)
        socks = []
        for i in range(n):
            ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws", compress=0)
            await ws.send_json({"type": "reset", "data": {} if openenv else {"index": i % 64, "seed": i}})
            await ws.receive_json()
            socks.append(ws)
        await asyncio.sleep(0.5)
        after = rss_kb(pid)
        for ws in socks:
            await ws.close()
    return (after - before) / n


# ------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="measuring time per figure and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every figure (the best is kept)")
    ap.add_argument("--idle", type=int, default=500, help="idle sessions opened to measure memory")
    ap.add_argument("--threads", type=int, default=8, help="the envfoundry server's --env-threads")
    args = ap.parse_args()
    t_start = time.time()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.seconds:g}s per figure; "
          "pairs/s = reset + one step (a tool call that echoes)")
    base = in_process_rate(args.seconds)
    print(f"in process (no server):               {base:10,.0f} pairs/s")

    rows: dict[str, dict[int, float]] = {}
    cpu: dict[str, dict[int, float | None]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    ef, ef_url = start_envfoundry(args.threads)
    oe = start_openenv(tmp)
    oe_idle = None
    sec = args.seconds
    runs: list[tuple[str, Callable[[int], Awaitable[tuple[float, float | None]]]]] = [
        ("envfoundry WebSocket", lambda n: ws_rate(ef_url, n, sec, openenv=False, pid=ef.pid))]
    if oe is not None:
        runs.append(("OpenEnv echo WebSocket", lambda n: ws_rate(oe[1], n, sec, openenv=True, pid=oe[0].pid)))
    runs += [("envfoundry HTTP", lambda n: http_rate(ef_url, n, sec, pid=ef.pid)),
             ("envfoundry client (connect)", lambda n: client_rate(ef_url, n, sec, pid=ef.pid))]
    try:
        # rounds of every figure in turn, best of each kept: the machine's load changes while it runs
        for n in LEVELS:
            for _ in range(args.rounds):
                for name, fn in runs:
                    print(f"  {name}, {n} sessions ...", end="\r", flush=True)
                    rate, us = asyncio.run(fn(n))
                    if rate > rows.setdefault(name, {}).get(n, -1.0):
                        rows[name][n], cpu.setdefault(name, {})[n] = rate, us
        ef_idle = asyncio.run(idle_kb(ef_url, ef.pid, args.idle, openenv=False))
        if oe is not None:
            oe_idle = asyncio.run(idle_kb(oe[1], oe[0].pid, args.idle, openenv=True))
    finally:
        stop(ef)
        if oe is not None:
            stop(oe[0])
        shutil.rmtree(tmp, ignore_errors=True)
    print(" " * 60, end="\r")

    print(f"\n{'pairs/s (best of ' + str(args.rounds) + ')':32}" + "".join(f"{f'{n} sessions':>16}" for n in LEVELS)
          + "   server CPU per pair at 64")
    for name, r in rows.items():
        us = cpu[name][64]
        print(f"{name:32}" + "".join(f"{r[n]:>10,.0f} {r[n] / base:4.2f}x" for n in LEVELS)
              + (f"{us:12,.0f} us" if us is not None else ""))
    print("(x: the share of the in-process rate; the client loops run in this process, on the same cores)")
    if "OpenEnv echo WebSocket" in rows:
        ours, theirs = rows["envfoundry WebSocket"][64], rows["OpenEnv echo WebSocket"][64]
        print(f"\nenvfoundry / OpenEnv over WebSocket at 64 sessions: {ours / theirs:.2f}x the rate (goal >= 3x)")
        a, b = cpu["envfoundry WebSocket"][64], cpu["OpenEnv echo WebSocket"][64]
        if a and b:
            print(f"server CPU per reset+step pair at 64 sessions: envfoundry {a:,.0f} us, OpenEnv {b:,.0f} us "
                  f"({b / a:.2f}x less)")
    else:
        print("\nOpenEnv is not installed (pip install openenv==0.10.0): no comparison")
    print(f"memory per idle session (RSS growth / {args.idle} WebSocket sessions holding an episode): "
          f"envfoundry {ef_idle:.1f} KiB" + (f", OpenEnv {oe_idle:.1f} KiB" if oe_idle is not None else ""))
    print(f"(bench took {time.time() - t_start:.0f}s)")


if __name__ == "__main__":
    main()
