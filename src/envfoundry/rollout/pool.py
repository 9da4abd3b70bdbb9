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
the same name and version as the parent. The policy travels by pickle, after
``policy.for_worker()`` when it has one (``local`` hands out a client of the servers it
started, so N workers share its llama.cpp slots). As with any start method but ``fork``, a script that
runs workers must do so under ``if __name__ == "__main__":``, since workers import its main module.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import pickle
import signal
import threading
import time
from array import array
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from ..core.env import Environment, format_exception
from ..core.errors import EnvfoundryError, UsageError
from ..core.policy import Policy
from ..core.task import Task
from .engine import RolloutConfig, run_all
from .store import encode_record

#: (encoded record line, the record's light fields) for each finished rollout
OnLine = Callable[[bytes, dict[str, Any]], None]
Light = Callable[[dict[str, Any]], dict[str, Any]]

SEND_RECORDS = 64  # a worker sends its finished records in batches of this many...
SEND_INTERVAL_S = 0.05  # ...or at least this often
STOP_GRACE_S = 5.0


class WorkerError(EnvfoundryError):
    """A worker process failed: it could not start, or it died before finishing its jobs."""


def split_concurrency(concurrency: int, workers: int) -> list[int]:
    """Rollouts in flight per worker: ``concurrency`` shared as evenly as possible."""
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if workers > concurrency:
        raise UsageError(f"workers ({workers}) must not exceed concurrency ({concurrency}): each worker "
                         "keeps at least one rollout in flight")
    q, r = divmod(concurrency, workers)
    return [q + (i < r) for i in range(workers)]


def _dumps(obj: object, what: str) -> bytes:
    """``obj`` pickled for worker processes, or a UsageError naming ``what`` cannot be sent."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - anything unpicklable
        raise UsageError(f"{what} cannot be sent to worker processes ({type(e).__name__}: {e}); "
                         "use workers=1") from None


def worker_policy(policy: Policy) -> Policy:
    """The picklable policy a worker process runs (``policy.for_worker()`` when defined)."""
    fn = getattr(policy, "for_worker", None)
    pol = fn() if callable(fn) else policy
    _dumps(pol, f"policy {getattr(policy, 'name', policy)!r}")
    return pol


def check_workers(env: Environment, source: object, tasks: Sequence[Task], policy: Policy) -> bytes:
    """What workers > 1 needs, checked before anything is written: an environment that workers
    can load (``source``: its ``(spec, args)``), and tasks and policy that can be sent to them.
    Returns the pickled tasks, for :func:`run_pool` (so they are pickled once)."""
    if source is None:
        raise UsageError(f"workers > 1 needs an environment given by name or file spec, or made by "
                         f"envfoundry.load(); {env.name!r} was built in this process only")
    return check_sendable(tasks, policy)


def check_sendable(tasks: Sequence[Task], policy: Policy) -> bytes:
    """Refuse, before a run directory is made, tasks (and a policy without ``for_worker``) that
    cannot be pickled to worker processes; returns the pickled tasks."""
    blob = _dumps(list(tasks), "the tasks")
    if not callable(getattr(policy, "for_worker", None)):
        worker_policy(policy)
    return blob


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
    index = remaining_jobs(tasks, cfg.samples, offset, done)
    if not (len(tasks) * cfg.samples if index is None else len(index)):
        return
    pol = worker_policy(policy)
    ctx = _context()
    counter = ctx.Value("q", 0)  # the next unclaimed job; its lock is taken by workers only
    stop = ctx.RawValue("b", 0)  # set by the parent: claim nothing more (a dead worker may hold the lock)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    procs: list[Any] = []
    conns: list[Connection] = []
    pending: set[int] = set()  # started, and not yet done or lost
    ready: set[int] = set()  # sent their jobs
    failure: list[str] = []

    def halt() -> None:
        """No new rollouts; workers cancel theirs and hand over what finished."""
        stop.value = 1
        for j in pending & ready:
            with contextlib.suppress(OSError):
                conns[j].send(("stop", None))

    def end(exc: BaseException | None = None, force: bool = False) -> None:
        """Finish the run: with ``exc``, when no worker is pending, or (``force``) regardless."""
        if finished.done():
            return
        if exc is not None:
            finished.set_exception(exc)
        elif force or not pending:
            finished.set_result(None)

    def lost(i: int) -> None:
        pending.discard(i)
        for j in pending - ready:  # never got their jobs (the send loop stopped): nothing to wait for
            pending.discard(j)
            conns[j].close()  # EOF ends them
        procs[i].join(1.0)
        if not failure:
            failure.append(f"worker {i} (pid {procs[i].pid}) exited with code {procs[i].exitcode} before finishing "
                           "its rollouts; the stored records are kept and --resume runs the rest")
        halt()
        loop.call_later(STOP_GRACE_S, end, None, True)  # the others get a while to hand over, not forever
        end()

    def on_readable(i: int) -> None:
        conn = conns[i]
        while True:
            try:
                if not conn.poll():
                    return
                kind, data = conn.recv()
            except (EOFError, OSError):  # the worker is gone
                loop.remove_reader(conn.fileno())
                if i in pending:
                    lost(i)
                return
            try:
                if kind == "recs":
                    for line, lt in data:
                        on_line(line, lt)
                elif kind == "error":
                    failure.append(f"worker {i}: {data}")
                elif kind == "done":
                    loop.remove_reader(conn.fileno())
                    pending.discard(i)
                    end()
                    return
            except Exception as e:  # noqa: BLE001 - the parent's own failure (e.g. the disk is full)
                for c in conns:
                    with contextlib.suppress(ValueError, OSError):
                        loop.remove_reader(c.fileno())
                end(e)
                return

    try:
        _start_quietly(ctx)
        for i, share in enumerate(shares):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(target=_worker_main, name=f"envfoundry-worker-{i}", daemon=True,
                            args=(child, env_source, env_id, replace(cfg, concurrency=share), counter, stop, light))
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
            pending.add(i)
        # the jobs, pickled once while the workers load the environment, go down each pipe (as a
        # Process argument they would be pickled per worker, and each start would wait for the last)
        if tasks_blob is None:
            tasks_blob = _dumps(list(tasks), "the tasks")
        plan = _dumps((pol, cfg.samples, offset, index), f"policy {getattr(policy, 'name', policy)!r}")
        for i, conn in enumerate(conns):
            try:
                conn.send_bytes(tasks_blob)
                conn.send_bytes(plan)
            except OSError:  # it died before reading its jobs: read why (its error message), then EOF
                on_readable(i)
                if i in pending:
                    lost(i)
                break
            ready.add(i)
            loop.add_reader(conn.fileno(), on_readable, i)
        await finished
    except asyncio.CancelledError:
        halt()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(STOP_GRACE_S):  # let workers hand over what finished
                await asyncio.shield(finished)
        raise
    finally:
        halt()
        for i, c in enumerate(conns):
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(c.fileno())
            if i not in ready:
                c.close()  # a worker still waiting for its jobs gets EOF and ends
        broken = bool(failure) or (finished.done() and not finished.cancelled() and finished.exception() is not None)
        deadline = time.monotonic() + (1.0 if broken else STOP_GRACE_S)
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join()
        for c in conns:
            c.close()  # closing twice is harmless
    if failure:
        raise WorkerError(failure[0])


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


def remaining_jobs(tasks: Sequence[Task], samples: int, offset: int,
                   done: Container[tuple[str, int]]) -> array[int] | None:
    """The jobs to run as numbers ``j`` (task ``j // samples``, sample ``offset + j % samples``),
    or None for all of them: nothing per job is built or sent for a fresh run, however many
    samples it has. (A resumed run lists the jobs it still needs.)"""
    if not done:
        return None
    left = array("q", (ti * samples + s for ti, t in enumerate(tasks) for s in range(samples)
                       if (t.id, offset + s) not in done))
    return None if len(left) == len(tasks) * samples else left


# ----------------------------------------------------------------- in the worker
def _worker_main(conn: Connection, env_source: tuple[str, dict[str, str]], env_id: tuple[str, str],
                 cfg: RolloutConfig, counter: Any, stop: Any, light: Light) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how a Ctrl-C ends the run
    # what the fork server imported lives as long as we do: frozen, the collector never scans it
    # again (a full collection through it, set off by unpickling the tasks, took 20 ms of a start)
    gc.freeze()
    try:
        from ..core.loading import load

        env = load(*env_source)  # first: task data may hold classes of an environment file
        if (env.name, env.version) != env_id:
            raise WorkerError(f"environment {env_source[0]!r} loads as {env.name} {env.version} in a worker "
                              f"process, not {env_id[0]} {env_id[1]}; a built-in or file environment is needed "
                              "for workers > 1")
        blob = conn.recv_bytes()  # both messages first: the parent's sends never wait on our unpickling
        plan = conn.recv_bytes()
        tasks = pickle.loads(blob)
        policy, samples, offset, index = pickle.loads(plan)
        del blob, plan
        gc.freeze()  # the tasks too: they live to the end
        asyncio.run(_worker(conn, env, policy, tasks, samples, offset, index, cfg, counter, stop, light))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        with contextlib.suppress(OSError):
            conn.send(("error", e.args[0] if isinstance(e, EnvfoundryError) and e.args else format_exception(e)))
        raise SystemExit(1) from None
    with contextlib.suppress(OSError):  # a parent that was killed hears nothing: no traceback for it
        conn.send(("done", None))
    conn.close()


async def _worker(conn: Connection, env: Environment, policy: Policy, tasks: list[Task], samples: int, offset: int,
                  index: array[int] | None, cfg: RolloutConfig, counter: Any, stop: Any, light: Light) -> None:
    n = len(tasks) * samples if index is None else len(index)
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
            j = i if index is None else index[i]
            yield tasks[j // samples], offset + j % samples

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
