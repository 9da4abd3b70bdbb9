"""The process-pool backend: the same engine in N worker processes, one run store in the parent.

One Python process can only keep so many rollouts per second in flight: against a fast model
server the client's own CPU (HTTP, episodes, graders, records) is the limit. With ``workers=N``
the jobs are shared by N processes (from a ``forkserver``, else ``spawn``), each running
:func:`run_all` with its own event loop and policy client at ``concurrency / N`` in flight. Results do not depend on the
split: every rollout's seed is a hash of (run seed, task id, sample), whichever process runs it.

- **Jobs** are claimed one at a time from a shared counter, so a slow multi-turn rollout never
  holds back a queue of others. A job is a number (task ``j // samples``, sample ``j % samples``):
  workers get the tasks once and nothing per job, unless a resumed run lists what is left.
- **Records** are serialised in the worker (the same bytes the store would write) and sent to the
  parent in batches over a pipe; the parent appends them to the run store and the summary. A
  record reaches the store only once its batch arrives, so a killed run loses at most the last
  batches in flight, and ``--resume`` runs those rollouts again.
- **Stopping**: on cancellation (Ctrl-C) the parent takes the remaining jobs off the counter and
  tells each worker to cancel its rollouts and send what has finished; a worker that does not
  answer within ``STOP_GRACE_S`` is terminated. A worker that dies ends the run with an error
  that names it; the records already stored are kept.

Workers load the environment by its spec (a built-in name or ``file.py:factory``) and must get
the same name and version as the parent (what they are sent: :mod:`.jobs`, shared with the Ray
backend). The policy travels by pickle, after ``policy.for_worker()`` when it has one (``local``
hands out a client of the servers it started, so N workers share its llama.cpp slots). As with
any start method but ``fork``, a script that runs workers must do so under
``if __name__ == "__main__":``, since workers import its main module.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Container, Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from ..core.env import Environment, format_exception
from ..core.errors import EnvfoundryError
from ..core.policy import Policy
from ..core.task import Task
from .engine import RolloutConfig, run_all
from .jobs import (  # noqa: F401 - check_sendable, remaining_jobs, worker_policy: re-exported
    Jobs,
    Light,
    OnLine,
    WorkerError,
    WorkerJobs,
    check_sendable,
    check_workers,
    load_worker_env,
    plan_jobs,
    remaining_jobs,
    split_concurrency,
    worker_policy,
)
from .store import encode_record

SEND_RECORDS = 64  # a worker sends its finished records in batches of this many...
SEND_INTERVAL_S = 0.05  # ...or at least this often
STOP_GRACE_S = 5.0


# ----------------------------------------------------------------- the process pool
async def run_pool(
    env_source: tuple[str, dict[str, str]],
    env_id: tuple[str, str],
    tasks: Sequence[Task],
    policy: Policy,
    cfg: RolloutConfig,
    workers: int,
    on_line: OnLine,
    light: Light,
    *,
    offset: int = 0,
    done: Container[tuple[str, int]] = (),
    tasks_blob: bytes | None = None,
) -> None:
    """Run ``cfg.samples`` rollouts of each of ``tasks`` (samples ``offset ..``, less those in
    ``done``) in ``workers`` processes; ``on_line`` receives each finished record.

    ``env_source`` is (spec, args) for :func:`envfoundry.load` in the workers; ``env_id`` the
    (name, version) they must find. ``policy`` must be started already (a ``local`` server).
    ``tasks_blob``: ``tasks`` pickled already (by :func:`check_workers`).
    """
    shares = split_concurrency(cfg.concurrency, workers)
    jobs = plan_jobs(tasks, policy, cfg, offset, done, tasks_blob)
    if jobs is None:
        return
    pool = _Pool(on_line)
    try:
        pool.start(shares, env_source, env_id, cfg, light)
        pool.send(jobs)
        await pool.finished
    except asyncio.CancelledError:
        await pool.hand_over()
        raise
    finally:
        pool.shutdown()
    if pool.failure:
        raise WorkerError(pool.failure[0])


class _Pool:
    """The parent's side of a pool run: the worker processes, a pipe to each, and the run's end
    (:attr:`finished`: when every worker is done, or the first failure)."""

    def __init__(self, on_line: OnLine) -> None:
        self.on_line = on_line
        self.ctx = ctx = _context()
        self.counter = ctx.Value("q", 0)  # the next unclaimed job; its lock is taken by workers only
        self.stop = ctx.RawValue("b", 0)  # set by the parent: claim nothing more (a dead worker may hold the lock)
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.pending: set[int] = set()  # started, and not yet done or lost
        self.ready: set[int] = set()  # sent their jobs
        self.failure: list[str] = []

    def start(self, shares: list[int], env_source: tuple[str, dict[str, str]], env_id: tuple[str, str],
              cfg: RolloutConfig, light: Light) -> None:
        _start_quietly(self.ctx)
        for i, share in enumerate(shares):
            parent, child = self.ctx.Pipe(duplex=True)
            p = self.ctx.Process(target=_worker_main, name=f"envfoundry-worker-{i}", daemon=True,
                                 args=(child, env_source, env_id, replace(cfg, concurrency=share), self.counter,
                                       self.stop, light))
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
            self.pending.add(i)

    def send(self, jobs: Jobs) -> None:
        """The jobs, pickled once while the workers load the environment, down each pipe (as a
        Process argument they would be pickled per worker, and each start would wait for the last)."""
        tasks_blob, plan = jobs.blobs()
        for i, conn in enumerate(self.conns):
            try:
                conn.send_bytes(tasks_blob)
                conn.send_bytes(plan)
            except OSError:  # it died before reading its jobs: read why (its error message), then EOF
                self.on_readable(i)
                if i in self.pending:
                    self.lost(i)
                break
            self.ready.add(i)
            self.loop.add_reader(conn.fileno(), self.on_readable, i)

    def halt(self) -> None:
        """No new rollouts; workers cancel theirs and hand over what finished."""
        self.stop.value = 1
        for j in self.pending & self.ready:
            with contextlib.suppress(OSError):
                self.conns[j].send(("stop", None))

    def end(self, exc: BaseException | None = None, force: bool = False) -> None:
        """Finish the run: with ``exc``, when no worker is pending, or (``force``) regardless."""
        if self.finished.done():
            return
        if exc is not None:
            self.finished.set_exception(exc)
        elif force or not self.pending:
            self.finished.set_result(None)

    def lost(self, i: int) -> None:
        self.pending.discard(i)
        for j in self.pending - self.ready:  # never got their jobs (the send loop stopped): nothing to wait for
            self.pending.discard(j)
            self.conns[j].close()  # EOF ends them
        p = self.procs[i]
        p.join(1.0)
        if not self.failure:
            self.failure.append(f"worker {i} (pid {p.pid}) exited with code {p.exitcode} before finishing "
                                "its rollouts; the stored records are kept and --resume runs the rest")
        self.halt()
        self.loop.call_later(STOP_GRACE_S, self.end, None, True)  # the others get a while to hand over, not forever
        self.end()

    def on_readable(self, i: int) -> None:
        conn = self.conns[i]
        while True:
            try:
                if not conn.poll():
                    return
                kind, data = conn.recv()
            except (EOFError, OSError):  # the worker is gone
                self.loop.remove_reader(conn.fileno())
                if i in self.pending:
                    self.lost(i)
                return
            try:
                if self._handle(i, kind, data):
                    return
            except Exception as e:  # noqa: BLE001 - the parent's own failure (e.g. the disk is full)
                self._unwatch()
                self.end(e)
                return

    def _handle(self, i: int, kind: str, data: Any) -> bool:
        """One message from worker ``i``; True when it was its last."""
        if kind == "recs":
            for line, lt in data:
                self.on_line(line, lt)
        elif kind == "error":
            self.failure.append(f"worker {i}: {data}")
        elif kind == "done":
            self.loop.remove_reader(self.conns[i].fileno())
            self.pending.discard(i)
            self.end()
            return True
        return False

    def _unwatch(self) -> None:
        for c in self.conns:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(c.fileno())

    async def hand_over(self) -> None:
        """On cancellation: the workers get ``STOP_GRACE_S`` to hand over what finished."""
        self.halt()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(STOP_GRACE_S):
                await asyncio.shield(self.finished)

    def shutdown(self) -> None:
        """Stop and reap every worker (terminated after a grace period), close the pipes."""
        self.halt()
        self._unwatch()
        for i, c in enumerate(self.conns):
            if i not in self.ready:
                c.close()  # a worker still waiting for its jobs gets EOF and ends
        f = self.finished
        broken = bool(self.failure) or (f.done() and not f.cancelled() and f.exception() is not None)
        deadline = time.monotonic() + (1.0 if broken else STOP_GRACE_S)
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            c.close()  # closing twice is harmless


def _start_quietly(ctx: Any) -> None:
    """Start the fork server with SIGINT ignored, so a Ctrl-C while it imports prints no
    traceback from it, and the workers it forks ignore SIGINT from their first instant."""
    if ctx.get_start_method() != "forkserver" or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, old)


def _context() -> Any:
    """``forkserver`` where there is one: after the first run, a worker starts in milliseconds
    instead of importing envfoundry afresh (``spawn``, the fallback, takes ~0.4 s). Never plain
    ``fork``: the parent runs an event loop and maybe threads."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["envfoundry.rollout.pool", "envfoundry.policies.openai"])
        return ctx
    return mp.get_context("spawn")


# ----------------------------------------------------------------- in the worker
def _worker_main(conn: Connection, env_source: tuple[str, dict[str, str]], env_id: tuple[str, str],
                 cfg: RolloutConfig, counter: Any, stop: Any, light: Light) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how a Ctrl-C ends the run
    # what the fork server imported lives as long as we do: frozen, the collector never scans it
    # again (a full collection through it, set off by unpickling the tasks, took 20 ms of a start)
    gc.freeze()
    try:
        env = load_worker_env(env_source, env_id)  # first: task data may hold classes of an environment file
        blob = conn.recv_bytes()  # both messages first: the parent's sends never wait on our unpickling
        plan = conn.recv_bytes()
        jobs = WorkerJobs.loads(blob, plan)
        del blob, plan
        gc.freeze()  # the tasks too: they live to the end
        asyncio.run(_worker(conn, env, jobs, cfg, counter, stop, light))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        with contextlib.suppress(OSError):
            conn.send(("error", e.args[0] if isinstance(e, EnvfoundryError) and e.args else format_exception(e)))
        raise SystemExit(1) from None
    with contextlib.suppress(OSError):  # a parent that was killed hears nothing: no traceback for it
        conn.send(("done", None))
    conn.close()


async def _worker(conn: Connection, env: Environment, jobs: WorkerJobs, cfg: RolloutConfig, counter: Any, stop: Any,
                  light: Light) -> None:
    n, policy = jobs.n, jobs.policy
    lock = counter.get_lock()
    parent = mp.parent_process()

    def claim() -> Iterator[tuple[Task, int]]:  # one job at a time from the shared counter
        while not stop.value:
            if not lock.acquire(timeout=0.5):  # held by a worker that died: the parent stops the run
                if parent is not None and not parent.is_alive():
                    return  # and if the parent itself is gone, nobody will
                continue
            try:
                i = counter.value
                counter.value = i + 1
            finally:
                lock.release()
            if i >= n:
                return
            yield jobs[i]

    batch: list[tuple[bytes, dict[str, Any]]] = []

    def send() -> None:
        if batch:
            conn.send(("recs", batch))  # pickled right here, so the list can be reused
            batch.clear()

    def on_record(rec: dict[str, Any]) -> None:
        batch.append((encode_record(rec), light(rec)))
        if len(batch) >= SEND_RECORDS:
            send()

    async def sender() -> None:
        while True:
            await asyncio.sleep(SEND_INTERVAL_S)
            send()

    loop = asyncio.get_running_loop()
    await policy.start()
    main = asyncio.ensure_future(run_all(env, claim(), policy, cfg, on_record, n))

    def on_parent() -> None:  # "stop": cancel what is in flight, keep what finished
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            msg = ("stop", None)
        if msg[0] == "stop":
            loop.remove_reader(conn.fileno())
            main.cancel()

    loop.add_reader(conn.fileno(), on_parent)
    flusher = asyncio.ensure_future(sender())
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await main
    finally:
        flusher.cancel()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
        try:
            await policy.close()
        finally:
            send()
