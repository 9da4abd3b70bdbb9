"""`envfoundry view` on large runs: the time of its list pages (figures, not assertions).

    python bench/bench_view.py [--sizes 1000,100000] [--env math|shop]

For each size a run store of that many trajectories is synthesised with the real record writer
(``RunStore.append``: records copied from a real rollout of ``--env`` with fresh ids, scores and a
few errors) and served by the real app (uvicorn, HTTP). Printed, measured in this run:

- baseline: reading the run's first page of 100 records with plain ``json.loads`` per line (what
  the page shows, without any viewer), and a naive whole-file scan (``json.loads`` of every line);
- the runs list (``/``: manifests and summaries);
- a run's page (``/run/...``: the first page of its task groups, pass@k): the first open, which
  builds the byte-offset index; again (index in memory); after a restart (index read from the
  cache folder); filtered (failed only, by score);
- one trajectory page (its record read by offset);
- the server's peak memory growth while serving the run (it never holds the conversations).

Issue 23's target: a run of 100,000 trajectories opens its list page in under 2 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import envfoundry
from envfoundry.rollout.store import RunStore
from envfoundry.rollout.summary import Summary
from envfoundry.viewer.app import bind, create_app


def synthesise(out: Path, n: int, env: str, work: Path) -> tuple[Path, float]:
    """A run store of ``n`` trajectories (8 samples per task) written by the real writer; (path, seconds)."""
    src = work / f"template-{env}"
    if not src.exists():
        envfoundry.evaluate(env, model="scripted:oracle", out=src, limit=4, samples=1)
    template = json.loads((src / "trajectories.jsonl").read_bytes().splitlines()[0])
    manifest = RunStore.open(src).manifest
    samples = 8
    tasks = [f"{i:016x}" for i in range(-(-n // samples))]
    m = manifest.model_copy(update={"task_ids": tasks, "samples": samples, "limit": len(tasks)})
    t = time.perf_counter()
    store = RunStore.create(out, m)
    summary = Summary()
    k = 0
    for task in tasks:
        for s in range(samples):
            if k == n:
                break
            rec = dict(template, task_id=task, sample=s, seed=k * 2654435761 % 2**63)
            if k % 20 == 19:
                rec.update(outcome="env_error", score=None, passed=None, breakdown=None, explanation=None,
                           error=f"Traceback (most recent call last):\nRuntimeError: tool crashed ({k % 3})")
            else:
                ok = (k * 7919) % 10 < 6
                rec.update(outcome="completed", score=1.0 if ok else 0.25, passed=ok)
            store.append(rec)
            summary.add(rec)
            k += 1
    store.close()
    store.write_summary(summary.result(samples=samples))
    return out, time.perf_counter() - t


class Server:
    def __init__(self, root: Path, cache: Path) -> None:
        import uvicorn

        self.app = create_app([root], cache=cache, prewarm=False)
        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def get(self, path: str) -> tuple[float, str]:
        t = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=600) as r:
            body = r.read().decode()
        return time.perf_counter() - t, body

    def until_ready(self, path: str) -> float:
        """Seconds until ``path`` is the page itself, not "indexing ..." (the page reloads by itself)."""
        t = time.perf_counter()
        while "http-equiv=\"refresh\"" in self.get(path)[1]:
            time.sleep(0.2)
        return time.perf_counter() - t

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def baseline(run: Path) -> tuple[float, float]:
    t = time.perf_counter()
    with open(run / "trajectories.jsonl", "rb") as f:
        first = [json.loads(next(f)) for _ in range(100)]
    page = time.perf_counter() - t
    assert len(first) == 100
    t = time.perf_counter()
    with open(run / "trajectories.jsonl", "rb") as f:
        for line in f:
            json.loads(line)
    return page, time.perf_counter() - t


def best(n: int, fn: Any) -> float:
    return min(fn() for _ in range(n))


def bench(n: int, env: str, work: Path) -> None:
    root = work / f"served-{n}"
    run, made = synthesise(root / "run", n, env, work)
    size = (run / "trajectories.jsonl").stat().st_size
    print(f"\n{n:,} trajectories of {env} ({size / 1e6:,.0f} MB, {size // n:,} bytes each; written in {made:.1f} s)")
    page_s, scan_s = baseline(run)
    print(f"  baseline: first 100 records, json.loads per line      {page_s * 1e3:9.1f} ms")
    print(f"  baseline: whole file, json.loads per line (naive)     {scan_s * 1e3:9.1f} ms")
    cache = work / f"cache-{n}"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    srv = Server(root, cache)
    try:
        runs_list = best(3, lambda: srv.get("/")[0])
        first = srv.until_ready("/run/0/run")
        warm = best(3, lambda: srv.get("/run/0/run")[0])
        failed = best(3, lambda: srv.get("/run/0/run?only=failed&sort=-score")[0])
        body = srv.get("/run/0/run")[1]
        traj = body[body.index("/traj/"):].split('"')[0].replace("&amp;", "&")
        one = best(3, lambda: srv.get(traj)[0])
    finally:
        srv.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    srv = Server(root, cache)
    try:
        restart = srv.get("/run/0/run")[0]
    finally:
        srv.stop()
    rows = [("runs list  /", runs_list), ("run page, first open (builds the index)", first),
            ("run page again (index in memory)", warm), ("run page after a restart (index from the cache)", restart),
            ("run page, failed only by score", failed), ("trajectory page", one)]
    for what, s in rows:
        print(f"  {what:<52}{s * 1e3:9.1f} ms   {s / page_s:8.1f}x baseline page")
    print(f"  server's peak memory growth (this process)           {(rss1 - rss0) / 1024:9.1f} MB"
          f"   (the file is {size / 1e6:,.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--env", default="math", choices=["math", "shop"])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-view-"))
    try:
        for n in (int(x) for x in a.sizes.split(",")):
            bench(n, a.env, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
