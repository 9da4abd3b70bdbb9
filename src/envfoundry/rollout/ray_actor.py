"""The Ray backend's actor (:mod:`.ray_backend` is the driver's side): the environment loaded by
its spec, the jobs, and a fixed number of rollouts in flight over the batches the driver hands it.
Each batch returns its records encoded as the run store's lines; on ``stop`` the rollouts in
flight are cancelled and each open batch returns what finished."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from ..core.env import format_exception
from ..core.errors import EnvfoundryError
from ..core.version import __version__
from .engine import RolloutConfig, run_rollout
from .jobs import Light, WorkerError, WorkerJobs, load_worker_env
from .store import encode_record


class _Batch:
    """Jobs ``lo .. hi - 1`` handed to an actor: the records of those that finished."""

    __slots__ = ("left", "lines", "done", "error", "t0", "t1")

    def __init__(self, size: int) -> None:
        self.left = size
        self.lines: list[tuple[bytes, dict[str, Any]]] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None
        self.t0: float | None = None
        self.t1 = 0.0

    def add(self, line: bytes, lt: dict[str, Any]) -> None:
        self.lines.append((line, lt))
        self.left -= 1
        if not self.left:
            self.finish()

    def finish(self, error: str | None = None) -> None:
        if not self.done.done():
            self.error, self.t1 = error, time.perf_counter()
            self.done.set_result(None)


class Runner:
    """A Ray actor: the environment loaded by its spec, the jobs, and ``cfg.concurrency`` rollouts
    in flight over whatever batches the driver has handed it."""

    def __init__(self, env_source: tuple[str, dict[str, str]], env_id: tuple[str, str], cfg: RolloutConfig,
                 light: Light, tasks_blob: bytes, plan: bytes) -> None:
        self.cfg, self.light = cfg, light
        self.batches: set[_Batch] = set()
        self.slots: list[asyncio.Future[None]] = []
        self.queue: asyncio.Queue[tuple[int, _Batch]] | None = None
        self.error: str | None = None
        try:
            self.env = load_worker_env(env_source, env_id, where="a Ray worker", need="--backend ray")
            self.jobs = WorkerJobs.loads(tasks_blob, plan)
        except BaseException as e:  # noqa: BLE001 - reported by ready(), raised by the driver
            self.error = _message(e)

    async def ready(self) -> dict[str, Any]:
        """Start the policy and the slots; the answer says which envfoundry runs here, or what failed."""
        if self.error is None:
            try:
                await self.jobs.policy.start()
            except Exception as e:  # noqa: BLE001
                self.error = _message(e)
        if self.error is None:
            self.queue = asyncio.Queue()
            self.slots = [asyncio.ensure_future(self._slot()) for _ in range(self.cfg.concurrency)]
        import ray

        return {"error": self.error, "version": __version__, "node": ray.util.get_node_ip_address(),
                "pid": os.getpid()}

    async def run(self, lo: int, hi: int) -> tuple[list[tuple[bytes, dict[str, Any]]], float]:
        """Jobs ``lo .. hi - 1``: the records of those that finished (all, unless the actor was
        stopped), and the seconds from the first one's start to the last one's end."""
        if self.queue is None:
            return [], 0.0
        batch = _Batch(hi - lo)
        self.batches.add(batch)
        for i in range(lo, hi):
            self.queue.put_nowait((i, batch))
        try:
            await batch.done
        finally:
            self.batches.discard(batch)
        if batch.error is not None:
            raise WorkerError(batch.error)
        return batch.lines, (batch.t1 - batch.t0) if batch.t0 is not None else 0.0

    async def stop(self) -> None:
        """Cancel the rollouts in flight; each open batch returns what finished."""
        q, self.queue = self.queue, None
        for s in self.slots:
            s.cancel()
        await asyncio.gather(*self.slots, return_exceptions=True)
        for b in list(self.batches):
            b.finish()
        if q is not None:
            with contextlib.suppress(Exception):
                await self.jobs.policy.close()

    async def _slot(self) -> None:
        assert self.queue is not None
        queue, n = self.queue, 0
        while True:
            i, batch = await queue.get()
            if batch.done.done():
                continue
            if batch.t0 is None:
                batch.t0 = time.perf_counter()
            task, sample = self.jobs[i]
            try:
                rec = await run_rollout(self.env, task, sample, self.jobs.policy, self.cfg)
                batch.add(encode_record(rec), self.light(rec))
            except Exception as e:  # noqa: BLE001 - a model server that died, or a bug: the run stops
                for b in list(self.batches):
                    b.finish(_message(e))
                return
            n += 1
            if n % 8 == 0:
                await asyncio.sleep(0)  # scripted policies never suspend: the driver's calls get a turn


def _message(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, EnvfoundryError) and e.args else format_exception(e)
