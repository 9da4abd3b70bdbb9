"""``--model local``: the embedded SmolLM2-135M-Instruct (or any GGUF) behind llama.cpp's server.

The servers are started on free 127.0.0.1 ports when the run starts and stopped when it ends, on
Ctrl-C and on errors. The context is SmolLM2's full 8192 tokens: multi-turn tool episodes
outgrow 2048 within ~10 turns.

Parallel slots: llama-cpp-python's server runs one request at a time (it has no ``--parallel``),
so :class:`LocalPolicy` runs ``slots`` server processes of the same model and hands each request
to an idle one (:class:`SlotRouter`); the CPU threads are shared among them. For a small model
that is far faster than one server using every thread: on 2 cores, two 1-thread servers give
about 1.75x the completion tokens/s of one 2-thread server (``bench/bench_models.py --local-slots``).
The default is one slot per usable core, at most ``MAX_DEFAULT_SLOTS``, for the default model,
and one slot for a ``local:PATH.gguf`` (a big model's memory is paid once per slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import warnings
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

from ..core.env import Episode
from ..core.errors import ModelServerDied, ServerUnreachable, UsageError
from ..core.policy import PolicyOutput
from .local import LocalServer, check_llama_installed, find_default_gguf, usable_cores
from .openai import OpenAIPolicy, RetryConfig, SamplingOptions, ToolMode

#: slots of the default model when none are asked for (each holds the model and an 8192-token
#: KV cache, about 0.4 GB for SmolLM2-135M)
MAX_DEFAULT_SLOTS = 4


async def _all_then_raise(aws: Iterable[Awaitable[Any]]) -> None:
    """Await every one of ``aws`` (a failure does not stop the others), then raise the first failure."""
    for r in await asyncio.gather(*aws, return_exceptions=True):
        if isinstance(r, BaseException):
            raise r


class SlotRouter:
    """One policy over several OpenAI-compatible servers that each run one request at a time:
    every request goes to an idle server, and waits for one when all are busy. Picklable (for
    worker processes: each routes over all the servers on its own).

    A server that is down (a request's retries ran out and the last could not connect:
    :class:`~envfoundry.core.errors.ServerUnreachable`) gets no more requests from this router,
    with a ``RuntimeWarning`` naming it, and the request goes to another server; the last server
    is never dropped, so when all are down requests end as ``policy_error`` as with one server;
    unless the router ``owns`` its servers (the local model's, started by this run on loopback):
    then the last one down raises :class:`~envfoundry.core.errors.ModelServerDied`, which stops the
    run instead of recording rollouts against a dead server."""

    def __init__(self, clients: list[OpenAIPolicy], *, owned: bool = False) -> None:
        if not clients:
            raise ValueError("SlotRouter needs at least one client")
        self.clients = clients
        self.owned = owned
        self.name = clients[0].name
        self._idle: asyncio.Queue[OpenAIPolicy] | None = None
        self._down: set[str] = set()  # base URLs of the servers found down, in this process

    @property
    def live(self) -> list[OpenAIPolicy]:
        """The clients of the servers that are not known to be down."""
        return [c for c in self.clients if c.base_url not in self._down]

    async def start(self) -> None:
        if self._idle is None:  # made first: two first act()s must not make two queues
            idle: asyncio.Queue[OpenAIPolicy] = asyncio.Queue()
            live = self.live
            k = os.getpid() % len(live)  # worker processes start on different slots
            for c in live[k:] + live[:k]:
                idle.put_nowait(c)
            self._idle = idle
        for c in self.clients:
            await c.start()

    async def act(self, ep: Episode) -> PolicyOutput:
        if self._idle is None:
            await self.start()
        idle = self._idle  # the queue this request came from gets the client back, even after close()
        assert idle is not None
        while True:
            client = await idle.get()
            down = False
            try:
                return await client.act(ep)
            except ServerUnreachable as e:
                if len(self.clients) - len(self._down) <= 1:
                    if self.owned:
                        raise ModelServerDied(f"the local model server {client.base_url} is down "
                                              f"({len(self.clients)} slot(s), none left): {e}") from e
                    raise  # the last server: the request fails as it would with one server
                down = True
                self._down.add(client.base_url)
                warnings.warn(f"model server slot {client.base_url} is down, {len(self.live)} of "
                              f"{len(self.clients)} slots left: {e}", RuntimeWarning, stacklevel=2)
            finally:
                if not down:
                    idle.put_nowait(client)

    async def close(self) -> None:
        self._idle = None  # bound to this event loop: a later start() in another loop makes its own
        await _all_then_raise(c.close() for c in self.clients)

    def describe(self) -> dict[str, Any]:
        return self.clients[0].describe()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_idle"] = None  # bound to this process's event loop
        return state

    def for_worker(self) -> SlotRouter:
        """A copy for a worker process: the same servers, its own sessions and queue."""
        router: SlotRouter = pickle.loads(pickle.dumps(self))
        return router


class LocalPolicy:
    """Rollouts answered by ``slots`` llama.cpp servers of one GGUF model that this policy owns."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        sampling: SamplingOptions | None = None,
        retry: RetryConfig | None = None,
        tool_mode: ToolMode = "auto",
        n_ctx: int = 8192,
        slots: int | None = None,
    ) -> None:
        check_llama_installed()
        if slots is not None and slots < 1:
            raise UsageError(f"slots must be >= 1, got {slots}")
        self.model_path = Path(model_path) if model_path is not None else find_default_gguf()
        self.spec = "local" if model_path is None else f"local:{model_path}"
        cores = usable_cores()
        self.slots = slots if slots is not None else (min(MAX_DEFAULT_SLOTS, cores) if model_path is None else 1)
        q, r = divmod(cores, self.slots)  # every usable core used: the first r slots get one thread more
        self.servers = [LocalServer(self.model_path, n_ctx=n_ctx, n_threads=max(1, q + (i < r)))
                        for i in range(self.slots)]
        self.sampling = sampling or SamplingOptions()
        self.retry = retry or RetryConfig(request_timeout_s=600.0)
        self.tool_mode: ToolMode = tool_mode
        self.name = self.model_path.stem
        self._router: SlotRouter | None = None
        self._starting: asyncio.Lock | None = None  # two concurrent start()s start the servers once
        self._reported: set[int] = set()  # slots whose death postmortem() described already

    @property
    def server(self) -> LocalServer:
        """The first slot's server."""
        return self.servers[0]

    @property
    def clients(self) -> list[OpenAIPolicy]:
        """One OpenAI-compatible client per slot (after :meth:`start`)."""
        if self._router is None:
            raise RuntimeError("LocalPolicy.clients before start()")
        return self._router.clients

    async def start(self) -> None:
        if self._router is not None:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._router is None:
                await self._start()

    async def _start(self) -> None:
        try:
            for srv in self.servers:  # one after another: loading a model is CPU-bound anyway
                await srv.astart()
        except BaseException:
            with contextlib.suppress(Exception):  # the start's own error is the one to report
                await asyncio.shield(self._stop_servers())
            raise
        router = SlotRouter([
            OpenAIPolicy(srv.model_name, base_url=srv.base_url, sampling=self.sampling, retry=self.retry,
                         tool_mode=self.tool_mode, concurrency=2)
            for srv in self.servers
        ], owned=True)
        await router.start()
        self._router = router

    def for_worker(self) -> SlotRouter:
        """What a worker process runs (``rollout.pool``): a router over this policy's started
        servers, so any number of workers share them."""
        if self._router is None:
            raise RuntimeError("LocalPolicy.for_worker() before start()")
        return self._router.for_worker()

    async def _stop_servers(self) -> None:
        """Stop every server (each is tried), then raise the first failure, if any."""
        await _all_then_raise(srv.astop() for srv in self.servers)

    def stop_servers(self) -> None:
        """Stop every slot's server (blocking; idempotent)."""
        for srv in self.servers:
            srv.stop()

    async def close(self) -> None:
        try:
            if self._router is not None:
                await self._router.close()
        finally:
            self._router = None
            self._starting = None  # bound to this event loop
            self._warn_dead()
            await self._stop_servers()

    def _warn_dead(self) -> None:
        """A warning for each slot whose server died during the run while others went on (its exit
        status or signal and its log, which is kept), unless :meth:`postmortem` told of it already."""
        for i, srv in enumerate(self.servers):
            how = srv.exit_description()
            if how is None or i in self._reported:
                continue
            self._reported.add(i)
            warnings.warn(f"model server slot {i} (pid {srv.pid}) {how} during the run; the other slots went on; "
                          f"its log is kept: {srv.log_path}", RuntimeWarning, stacklevel=2)

    async def act(self, ep: Episode) -> PolicyOutput:
        if self._router is None:
            raise RuntimeError("LocalPolicy.act() before start()")
        return await self._router.act(ep)

    def postmortem(self, keep_logs_in: Path | None = None) -> str | None:
        """What became of this policy's servers when a run stopped on a dead one: each dead slot's
        exit status or signal and the last lines of its log (copied into ``keep_logs_in`` as
        ``slot-N.log``); None when every server still runs."""
        import shutil

        parts = []
        for i, srv in enumerate(self.servers):
            how = srv.exit_description()
            if how is None:
                continue
            self._reported.add(i)
            where = srv.log_path
            if keep_logs_in is not None and where is not None and where.exists():
                with contextlib.suppress(OSError):
                    keep_logs_in.mkdir(parents=True, exist_ok=True)
                    where = Path(shutil.copyfile(where, keep_logs_in / f"slot-{i}.log"))
            tail = srv.log_tail(15)
            parts.append(f"model server slot {i} (pid {srv.pid}) {how}; its log: {where}"
                         + (f"\n--- last lines of its log ---\n{tail}" if tail else ""))
        return "\n".join(parts) or None

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "model_file": self.model_path.name,
            "server": "llama-cpp-python",
            "slots": self.slots,
            "sampling": self.sampling.model_dump(),
            "tool_mode": self.tool_mode,
            "retry": self.retry.model_dump(),
        }
