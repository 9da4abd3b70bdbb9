"""Model-server benchmarks: ratios against the best plain client, measured in the same run.

    python bench/bench_models.py            # both parts
    python bench/bench_models.py --no-local # only the stub-server part
    python bench/bench_models.py --no-local --latency-ms 0 --workers 2,4,8   # engine workers on a big machine
    python bench/bench_models.py --breakdown  # where the engine's client CPU goes, layer by layer
    python bench/bench_models.py --local-slots  # the local model's parallel slots vs one server
    python bench/bench_models.py --server-cpu-us 150  # a server that is the limit, on a small machine

1. Engine vs raw: an instant OpenAI-compatible stub server runs in its own process on 127.0.0.1.
   Baseline: plain aiohttp, one shared session, 64 requests in flight, the same request body the
   engine sends; in one process and in ``--workers`` processes (the 64 shared among them), and
   the best of these is the baseline. Then envfoundry's engine (OpenAIPolicy, math env, full run
   store) at concurrency 64, in one process and with ``--workers`` worker processes. Printed: the
   rates and each engine's ratio to the baseline (target >= 0.95). One client process is
   CPU-bound against an instant server, so on a machine with cores to spare both sides need
   several; on 2 cores the server and the client already share the machine. Then the same against
   a stub that answers after ``--latency-ms`` (default 50 ms; a real model takes far longer),
   where what matters is whether the engine keeps 64 requests in flight.
   ``--server-cpu-us N`` runs only a third comparison: the stub works N us of CPU on each request,
   on a core of its own, with the clients on the other cores. The server is then the limit, as
   the one-process stub is on a many-core machine, and the ratio shows what the engine itself
   loses (start-up, the last rollouts, its pattern of requests) when the client has CPU to spare.
2. Local model: the embedded SmolLM2 llama.cpp server. Baseline: aiohttp straight at that
   server with the same prompts and sampling, one request at a time (the server serialises
   requests anyway). Then envfoundry's engine against the same server, also one rollout at a
   time. Printed: completion tokens/s of both (best of interleaved rounds) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

import envfoundry
from envfoundry.core.seeding import derive_seed
from envfoundry.policies.openai import OpenAIPolicy, SamplingOptions
from envfoundry.rollout.pool import split_concurrency

_JSON = {"Content-Type": "application/json"}


def _serve(delay_s: float, cpu_us: float = 0.0) -> None:
    from envfoundry.testing import StubServer

    if cpu_us and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the server gets a core of its own

    def reply(_body: dict) -> str:  # --server-cpu-us: the server works this long on each request
        end = time.perf_counter() + cpu_us / 1e6
        while time.perf_counter() < end:
            pass
        return "<answer>4</answer>"

    async def main() -> None:
        async with StubServer(keep_requests=False, reply=reply if cpu_us else "<answer>4</answer>",
                              delay_s=delay_s) as srv:
            print(srv.base_url, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


def _shape(n: int) -> tuple[int, int]:
    """(tasks, samples) giving n rollouts from the 2,000-task math test split."""
    tasks = min(n, 2000)
    return tasks, max(1, n // tasks)


def _bodies(env, n: int, model: str, max_tokens: int) -> list[dict]:
    """The request bodies the engine sends for n rollouts (run seed 0), byte for byte: built by
    the policy itself, so the plain client and the engine give the server the same work."""
    pol = OpenAIPolicy(model, base_url="http://127.0.0.1:1/v1",
                       sampling=SamplingOptions(temperature=0.0, max_tokens=max_tokens))
    tasks, samples = _shape(n)
    out = []
    for t in env.tasks("test")[:tasks]:
        for s in range(samples):
            ep = env.reset(t, seed=derive_seed(0, t.id, s))
            out.append(pol._request(ep, [], False, derive_seed(ep.seed, ep.turns) & 0x7FFFFFFF))
    return out


async def raw_rate(base_url: str, bodies: list[dict], concurrency: int) -> tuple[float, int]:
    """Requests/s and completion tokens of plain aiohttp at ``concurrency`` in flight."""
    url = base_url + "/chat/completions"
    it = iter(bodies)
    tokens = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            nonlocal tokens
            for body in it:  # orjson both ways, as the policy does: the best plain client
                async with s.post(url, data=orjson.dumps(body), headers=_JSON) as r:
                    data = orjson.loads(await r.read())
                    tokens += data["usage"]["completion_tokens"]

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - t), tokens


def _raw_proc(base_url: str, bodies: list[dict], concurrency: int, barrier, conn) -> None:
    barrier.wait()  # all processes start together; their start-up is not timed
    t = time.perf_counter()  # CLOCK_MONOTONIC: comparable between processes on Linux
    asyncio.run(raw_rate(base_url, bodies, concurrency))
    conn.send((t, time.perf_counter()))


def raw_rate_procs(base_url: str, bodies: list[dict], concurrency: int, procs: int) -> float:
    """Requests/s of plain aiohttp in ``procs`` processes (``concurrency`` in flight in all):
    a single client process is CPU-bound against a fast server, so the best plain client may
    need several, as the engine's workers do."""
    if procs == 1:
        return asyncio.run(raw_rate(base_url, bodies, concurrency))[0]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    pipes = [ctx.Pipe(duplex=False) for _ in range(procs)]
    ps = [ctx.Process(target=_raw_proc, args=(base_url, bodies[i::procs], c, barrier, pipes[i][1]))
          for i, c in enumerate(split_concurrency(concurrency, procs))]
    for p in ps:
        p.start()
    spans = [r.recv() for r, _ in pipes]
    for p in ps:
        p.join()
    return len(bodies) / (max(b for _, b in spans) - min(a for a, _ in spans))


async def engine_rate(base_url: str, model: str, n: int, concurrency: int, max_tokens: int,
                      workers: int = 1) -> tuple[float, int]:
    d = Path(tempfile.mkdtemp())
    pol = OpenAIPolicy(model, base_url=base_url, concurrency=concurrency,
                       sampling=SamplingOptions(temperature=0.0, max_tokens=max_tokens))
    try:
        env = envfoundry.load("math")
        tasks, samples = _shape(n)
        env.tasks("test")[:tasks]  # generate tasks outside the timed part, as for the baseline
        t = time.perf_counter()  # with workers, their start (fork, env load, session) is timed too
        run = await envfoundry.evaluate_async(env, model=pol, out=d / "run", limit=tasks, samples=samples,
                                              concurrency=concurrency, workers=workers)
        dt = time.perf_counter() - t
        assert run.summary["n_errors"] == 0, run.summary
        return run.summary["n_trajectories"] / dt, run.summary["completion_tokens"]
    finally:
        shutil.rmtree(d)


def bench_stub(n: int, concurrency: int, rounds: int, latency_ms: float = 0.0, workers: tuple[int, ...] = (),
               cpu_us: float = 0.0) -> None:
    cmd = [sys.executable, __file__, "--serve", "--latency-ms", str(latency_ms), "--server-cpu-us", str(cpu_us)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    pinned = bool(cpu_us) and len(cores) > 1
    try:
        if pinned:  # the clients keep off the server's core
            os.sched_setaffinity(0, cores - {min(cores)})
        assert p.stdout is not None
        base_url = p.stdout.readline().strip()
        env = envfoundry.load("math")
        bodies = _bodies(env, n, "stub-model", 256)
        n = len(bodies)  # what the engine runs too: tasks x samples
        counts = sorted({1, *workers})
        asyncio.run(raw_rate(base_url, bodies[:500], concurrency))  # warm-up
        for w in counts:  # warm-up, and the worker processes' fork server starts here
            asyncio.run(engine_rate(base_url, "stub-model", min(n, 2000), concurrency, 256, w))
        raws: dict[int, list[float]] = {w: [] for w in counts}
        engs: dict[int, list[float]] = {w: [] for w in counts}
        for _ in range(rounds):  # interleaved, best of each: the machine is noisy
            for w in counts:
                raws[w].append(raw_rate_procs(base_url, bodies, concurrency, w))
                engs[w].append(asyncio.run(engine_rate(base_url, "stub-model", n, concurrency, 256, w))[0])
        raw = max(max(v) for v in raws.values())  # the baseline: the best plain client
        best = max(counts, key=lambda w: max(engs[w]))
        what = ("instant stub server" if not (latency_ms or cpu_us) else
                f"stub server answering after {latency_ms:g} ms" if latency_ms else
                f"stub server working {cpu_us:g} us of CPU per request on a core of its own")
        where = f"1 server core and {len(cores) - 1} client cores" if pinned else f"{os.cpu_count()} cores"
        print(f"{what} (one process), {n:,} requests, concurrency {concurrency}, best of {rounds}, {where}:")
        for w in counts:
            print(f"  raw aiohttp, {_procs(w):<18} {max(raws[w]):>10,.0f} req/s")
        for w in counts:
            target = "   (target >= 0.95)" if not (latency_ms or cpu_us) and w == best else ""
            label = _procs(w, "worker" if w > 1 else "process")
            print(f"  envfoundry, {label:<19} {max(engs[w]):>10,.0f} rollouts/s   "
                  f"ratio to the best raw {max(engs[w]) / raw:.3f}{target}")
    finally:
        p.terminate()
        p.wait()
        if pinned:
            os.sched_setaffinity(0, cores)


def _procs(n: int, what: str = "process") -> str:
    return f"1 {what}" if n == 1 else f"{n} {what}es" if what == "process" else f"{n} {what}s"


def _server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_breakdown(n: int, concurrency: int, rounds: int) -> None:
    """Client CPU per request as the engine's layers are added one by one (instant stub server)."""
    from envfoundry.rollout.engine import RolloutConfig, iter_jobs, run_all

    p = subprocess.Popen([sys.executable, __file__, "--serve", "--latency-ms", "0"], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        base_url = p.stdout.readline().strip()
        env = envfoundry.load("math")
        bodies = _bodies(env, n, "stub-model", 256)
        tasks, samples = _shape(len(bodies))
        jobs = [(t, s) for t in env.tasks("test")[:tasks] for s in range(samples)]
        cfg = RolloutConfig(samples=samples, concurrency=concurrency)

        def policy() -> OpenAIPolicy:
            return OpenAIPolicy("stub-model", base_url=base_url, concurrency=concurrency,
                                sampling=SamplingOptions(temperature=0.0, max_tokens=256))

        async def layers(grade: bool) -> None:
            pol = policy()
            await pol.start()
            it = iter(jobs)

            async def worker() -> None:
                for task, sample in it:
                    ep = env.reset(task, seed=sample)
                    out = await pol.act(ep)
                    if grade:
                        ep.step(out.action)
                        env.grade(ep)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            await pol.close()

        async def engine() -> None:
            pol = policy()
            await pol.start()
            await run_all(env, iter_jobs(env.tasks("test")[:tasks], samples), pol, cfg, lambda rec: None)
            await pol.close()

        async def full() -> None:
            d = Path(tempfile.mkdtemp())
            try:
                await envfoundry.evaluate_async(env, model=policy(), out=d / "run", limit=tasks, samples=samples,
                                                concurrency=concurrency)
            finally:
                shutil.rmtree(d)

        steps = [
            ("plain aiohttp (the baseline)", lambda: raw_rate(base_url, bodies, concurrency)),
            ("+ OpenAIPolicy: messages, body, reply", lambda: layers(False)),
            ("+ episode step and grader", lambda: layers(True)),
            ("+ engine: rollout records, seeds, timings", engine),
            ("+ run store and summary (evaluate)", full),
        ]
        asyncio.run(raw_rate(base_url, bodies[:500], concurrency))  # warm-up
        cpu: dict[str, list[float]] = {name: [] for name, _ in steps}
        server: list[float] = []
        for _ in range(rounds):  # interleaved, best of each
            for name, fn in steps:
                c, sv = time.process_time(), _server_cpu_s(p.pid)
                asyncio.run(fn())
                cpu[name].append((time.process_time() - c) / len(bodies))
                if name == steps[0][0]:
                    server.append((_server_cpu_s(p.pid) - sv) / len(bodies))
        print(f"client CPU per request, instant stub server, {len(bodies):,} requests, concurrency {concurrency}, "
              f"best of {rounds}:")
        prev = None
        for name, _ in steps:
            us = 1e6 * min(cpu[name])
            print(f"  {name:<42} {us:7.1f} us" + (f"  ({us - prev:+.1f})" if prev is not None else ""))
            prev = us
        print(f"  the stub server's own CPU per request   {1e6 * min(server):7.1f} us (during the baseline)")
    finally:
        p.terminate()
        p.wait()


def bench_local(n: int, max_tokens: int, rounds: int) -> None:
    from envfoundry.policies.local import LocalServer

    env = envfoundry.load("math")
    with LocalServer() as srv:
        bodies = _bodies(env, n, srv.model_name, max_tokens)
        asyncio.run(raw_rate(srv.base_url, bodies[:2], 1))  # warm-up
        raws, engs = [], []
        for _ in range(rounds):  # interleaved, best of each: the machine is noisy
            t = time.perf_counter()
            _, raw_tokens = asyncio.run(raw_rate(srv.base_url, bodies, 1))
            raws.append((raw_tokens / (time.perf_counter() - t), raw_tokens))
            t = time.perf_counter()
            _, eng_tokens = asyncio.run(engine_rate(srv.base_url, srv.model_name, n, 1, max_tokens))
            engs.append((eng_tokens / (time.perf_counter() - t), eng_tokens))
    (raw_tps, raw_tokens), (eng_tps, eng_tokens) = max(raws), max(engs)
    print(f"local SmolLM2-135M (llama.cpp server), {n} math prompts, greedy, max_tokens {max_tokens}, one request")
    print(f"at a time (the server runs one anyway), best of {rounds}:")
    print(f"  direct aiohttp          {raw_tps:>10,.1f} completion tokens/s ({raw_tokens} tokens)")
    print(f"  through envfoundry      {eng_tps:>10,.1f} completion tokens/s ({eng_tokens} tokens)")
    print(f"  ratio envfoundry/direct {eng_tps / raw_tps:>10.3f}")


def bench_repack(n: int, max_tokens: int, rounds: int) -> None:
    """What turning llama.cpp's weight repacking off costs (envfoundry's default, since repacking
    crashes llama-cpp-python 0.3.36 on CPUs with AMX): completion tokens/s of two servers of the same
    model, one with repacking (llama.cpp's default) and one without, the same prompts, interleaved."""
    from envfoundry.policies.local import LocalServer

    env = envfoundry.load("math")
    flags = [f for f in ("avx512f", "amx_int8", "avx2") if f in Path("/proc/cpuinfo").read_text()] \
        if Path("/proc/cpuinfo").exists() else []
    rates: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
    servers = {True: LocalServer(repack=True), False: LocalServer(repack=False)}
    try:
        for srv in servers.values():
            srv.start()
        bodies = _bodies(env, n, servers[False].model_name, max_tokens)
        for srv in servers.values():
            asyncio.run(raw_rate(srv.base_url, bodies[:2], 1))  # warm-up
        for _ in range(rounds):
            for repack, srv in servers.items():  # one at a time: each server has every thread
                t = time.perf_counter()
                _, tokens = asyncio.run(raw_rate(srv.base_url, bodies, 1))
                rates[repack].append((tokens / (time.perf_counter() - t), tokens))
    finally:
        for srv in servers.values():
            srv.stop()
    (on, on_tokens), (off, off_tokens) = max(rates[True]), max(rates[False])
    print(f"llama.cpp weight repacking, SmolLM2-135M, {n} math prompts, greedy, max_tokens {max_tokens}, one "
          f"request at a time, best of {rounds}; CPU flags: {', '.join(flags) or 'unknown'}")
    print(f"  repacking on (llama.cpp's default)  {on:>8,.1f} completion tokens/s ({on_tokens} tokens)")
    print(f"  repacking off (envfoundry's)        {off:>8,.1f} completion tokens/s ({off_tokens} tokens)")
    print(f"  ratio off/on                        {off / on:>8.3f}")


def bench_local_slots(n: int, max_tokens: int, rounds: int, concurrency: int) -> None:
    """Parallel slots: envfoundry's ``local`` policy (several llama.cpp servers, the threads shared
    among them) against plain aiohttp at one server that has every thread, ``concurrency`` in flight."""
    from envfoundry.core.policy import KeepAlive
    from envfoundry.policies.embedded import LocalPolicy
    from envfoundry.policies.local import LocalServer

    env = envfoundry.load("math")
    pol = LocalPolicy(sampling=SamplingOptions(temperature=0.0, max_tokens=max_tokens))

    kept = KeepAlive(pol)  # evaluate closes its policy when it ends: the slots stay up between rounds

    async def engine() -> tuple[float, int]:
        d = Path(tempfile.mkdtemp())
        try:
            t = time.perf_counter()
            run = await envfoundry.evaluate_async(env, model=kept, out=d / "run", limit=n, concurrency=concurrency)
            return run.summary["completion_tokens"] / (time.perf_counter() - t), run.summary["completion_tokens"]
        finally:
            shutil.rmtree(d)

    async def go() -> tuple[list[tuple[float, int]], list[tuple[float, int]], int]:
        raws, engs = [], []
        async with LocalServer(n_ctx=8192) as srv:  # every usable thread, as LocalServer does by default
            bodies = _bodies(env, n, srv.model_name, max_tokens)
            await raw_rate(srv.base_url, bodies[:2], 1)  # warm-up
            await pol.start()  # the slots start before the clock, as the baseline's server does
            try:
                for _ in range(rounds):  # interleaved, best of each
                    t = time.perf_counter()
                    _, tokens = await raw_rate(srv.base_url, bodies, concurrency)
                    raws.append((tokens / (time.perf_counter() - t), tokens))
                    engs.append(await engine())
            finally:
                await pol.close()
            return raws, engs, srv.n_threads

    raws, engs, base_threads = asyncio.run(go())
    (raw_tps, raw_tokens), (eng_tps, eng_tokens) = max(raws), max(engs)
    print(f"local SmolLM2-135M, {n} math prompts, greedy, max_tokens {max_tokens}, {concurrency} in flight, "
          f"best of {rounds}:")
    print(f"  direct aiohttp, 1 server x {base_threads} threads "
          f"{raw_tps:>8,.1f} completion tokens/s ({raw_tokens} tokens)")
    print(f"  envfoundry local, {pol.slots} slots, threads {'+'.join(str(x.n_threads) for x in pol.servers)} "
          f"{eng_tps:>8,.1f} completion tokens/s ({eng_tokens} tokens)")
    print(f"  ratio envfoundry/direct {eng_tps / raw_tps:>10.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--latency-requests", type=int, default=10000,
                    help="requests of the --latency-ms and --server-cpu-us comparisons")
    ap.add_argument("--workers", default=str(max(2, min(8, (os.cpu_count() or 2) // 2))),
                    help="also run the engine with these numbers of worker processes (comma-separated), against "
                    "plain aiohttp in as many processes; the baseline is the best plain client (default: half the "
                    "cores, 2 to 8; 1: one process only)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--local-prompts", type=int, default=16)
    ap.add_argument("--local-max-tokens", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=50.0,
                    help="server latency of the second stub comparison (0: skip it)")
    ap.add_argument("--server-cpu-us", type=float, default=0.0,
                    help="only: a stub server that works this many us of CPU per request on a core of its own "
                    "(the clients on the others), so that the server is the limit, as on a many-core machine")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--local-slots", action="store_true",
                    help="only: the local policy's parallel slots against one server with every thread, "
                    "--local-prompts prompts with 8 in flight")
    ap.add_argument("--breakdown", action="store_true",
                    help="only: client CPU per request as the engine's layers are added")
    ap.add_argument("--repack", action="store_true",
                    help="only: local model tokens/s with llama.cpp's weight repacking off (envfoundry's default) "
                    "against on (llama.cpp's)")
    a = ap.parse_args()
    if a.serve:
        _serve(a.latency_ms / 1000, a.server_cpu_us)
        return
    if a.breakdown:
        bench_breakdown(a.requests, a.concurrency, a.rounds)
        return
    if a.repack:
        bench_repack(a.local_prompts, a.local_max_tokens, a.rounds)
        return
    if a.local_slots:
        bench_local_slots(a.local_prompts, a.local_max_tokens, a.rounds, 8)
        return
    try:
        workers = tuple(int(w) for w in a.workers.split(","))
    except ValueError:
        ap.error(f"--workers takes numbers separated by commas, got {a.workers!r}")
    if min(workers) < 1 or max(workers) > a.concurrency:
        ap.error(f"--workers must be between 1 and --concurrency ({a.concurrency})")
    if a.server_cpu_us:  # alone: worker processes must start (from the fork server) off the server's core
        bench_stub(a.latency_requests, a.concurrency, a.rounds, workers=workers, cpu_us=a.server_cpu_us)
        return
    bench_stub(a.requests, a.concurrency, a.rounds, workers=workers)
    if a.latency_ms:
        bench_stub(a.latency_requests, a.concurrency, a.rounds, a.latency_ms)
    if not a.no_local:
        bench_local(a.local_prompts, a.local_max_tokens, a.rounds)


if __name__ == "__main__":
    main()
