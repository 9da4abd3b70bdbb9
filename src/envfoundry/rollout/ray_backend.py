"""The Ray backend: the engine's rollouts on Ray actors across a cluster, one run store in the driver.

``evaluate(..., backend="ray", ray_address=...)``, ``envfoundry run --backend ray``:

- **Actors**: one per CPU of the cluster (``workers`` of them when > 1), spread over its nodes.
  Each loads the environment by its spec, as a worker process of the pool does, and runs the
  engine with its share of ``concurrency`` in flight. The tasks and the plan go to the object
  store once; a job is a number (:class:`~envfoundry.rollout.jobs.Jobs`), so the records do not
  depend on which actor ran what: a rollout's seed is a hash of (run seed, task id, sample).
- **Batches**: the driver hands each actor ranges of jobs sized to take about ``BATCH_S`` (one
  rollout up to ``MAX_BATCH``), with at most its share of ``concurrency`` plus one batch in flight
  per actor. A batch comes back as encoded records, which the driver appends to the run store as
  they arrive: a killed driver loses at most the batches in flight, and ``--resume`` runs them again.
- **Failures**: an actor that dies loses its unfinished batches; they run again on the others,
  never scored and never stored twice. A batch lost twice, or the loss of every actor, ends the
  run with a :class:`~envfoundry.rollout.jobs.WorkerError`, as does a failure inside an actor
  (a model server that died); what was stored is kept for ``--resume``.
- **Stopping**: on cancellation (Ctrl-C) each actor cancels its rollouts and returns what
  finished, within ``STOP_GRACE_S``; then the actors are killed. The actors belong to the driver:
  a driver that is killed takes them with it.

The actors are :class:`~envfoundry.rollout.ray_actor.Runner`. ``ray`` is imported only when a
run asks for it (``pip install "envfoundry[ray]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections import deque
from collections.abc import Container, Sequence
from dataclasses import replace
from typing import Any

from ..core.errors import EnvfoundryError, UsageError
from ..core.policy import Policy
from ..core.task import Task
from ..core.version import __version__
from .engine import RolloutConfig
from .jobs import Light, OnLine, WorkerError, plan_jobs, split_concurrency
from .ray_actor import Runner

BATCH_S = 0.2  # a batch is sized to take about this long on its actor...
MAX_BATCH = 1024  # ...and holds at most this many rollouts
MAX_ATTEMPTS = 2  # a batch lost with this many actors ends the run
STOP_GRACE_S = 5.0
START_TIMEOUT_S = 300.0  # no actor placed on the cluster in this long: the run ends
CONNECT_TIMEOUT_S = 5.0
WAIT_S = 0.5

ADDRESS_FORMS = ("auto (RAY_ADDRESS, or a cluster started on this machine), local (a new cluster for this run), "
                 "ray://HOST:PORT (Ray Client) or HOST:PORT (a head node)")
_HOST_PORT = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):([0-9]{1,5})")

_connected: str | None = None  # the address this module connected to (None: it did not connect)


class RayClusterError(EnvfoundryError):
    """The Ray cluster cannot be reached or refuses this driver (the machine's fault: exit code 1)."""


def ray_module() -> Any:
    """``ray``, or a UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError('--backend ray needs Ray: pip install "envfoundry[ray]"') from None
    return ray


def parse_address(text: str) -> str:
    """``--ray-address`` checked: ``auto``, ``local``, ``ray://HOST:PORT`` or ``HOST:PORT``."""
    t = text.strip()
    if t in ("auto", "local"):
        return t
    m = _HOST_PORT.fullmatch(t)
    if m is None or not 0 < int(m[3]) < 65536:
        raise UsageError(f"--ray-address (ray_address): expected {ADDRESS_FORMS}, got {text!r}")
    return t


def connect(address: str | None = None) -> None:
    """Connect this process to the Ray cluster at ``address`` (default ``auto``), once: a later run
    with the same address reuses the connection, and one that this process made itself with
    ``ray.init`` is used as it is. RayClusterError when the cluster cannot be reached."""
    global _connected
    ray = ray_module()
    addr = parse_address(address or "auto")
    if ray.is_initialized():
        if _connected in (None, addr):
            return
        disconnect()
    target = _dialled(addr)
    if target.startswith("ray://"):
        try:
            import grpc  # noqa: F401 - Ray Client's transport
        except ImportError:
            raise UsageError('a ray://... address needs the Ray Client: pip install "ray[client]"') from None
    if target:
        _probe(target, addr)  # Ray itself would retry an address that is wrong for minutes
    try:
        ray.init(address=addr, logging_level=logging.WARNING,
                 **({"include_dashboard": False} if addr == "local" else {}))
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, its own errors
        raise RayClusterError(_connect_failure(addr, e)) from None
    _connected = addr


def disconnect() -> None:
    """Drop the connection that :func:`connect` made (if any)."""
    global _connected
    if _connected is not None:
        ray_module().shutdown()
        _connected = None


def _dialled(addr: str) -> str:
    """What ``ray.init(address=addr)`` dials: ``host:port`` (Ray puts this node's IP for a loopback
    host, and finds ``auto`` in RAY_ADDRESS or among the clusters started on this machine), a
    ``ray://`` address, or '' (``local``: nothing to dial)."""
    given = os.environ.get("RAY_ADDRESS", "").strip() if addr == "auto" else addr
    if addr == "local" or given.startswith("ray://"):
        return "" if addr == "local" else given
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray version: the address as given
        return given if _HOST_PORT.fullmatch(given) else ""
    try:
        return canonicalize_bootstrap_address(given or "auto") or ""
    except ConnectionError as e:  # auto, and no cluster found
        raise RayClusterError(_connect_failure(addr, e)) from None
    except Exception:  # noqa: BLE001 - Ray's own check comes next
        return given if _HOST_PORT.fullmatch(given) else ""


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + b"\x04" + bytes(5)  # ...and an empty SETTINGS frame


def _probe(target: str, addr: str) -> None:
    """A RayClusterError unless ``target`` accepts a connection and answers as gRPC does (Ray's
    GCS and Ray Client both speak it): an HTTP/2 SETTINGS frame."""
    m = _HOST_PORT.fullmatch(target)
    if m is None:
        return
    host, port = m[2].strip("[]"), int(m[3])
    where = target if target == addr else f"{target} (from --ray-address {addr})"
    try:
        conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as e:
        raise RayClusterError(f"cannot reach the Ray cluster at {where}: {e.strerror or e}; is it running? "
                              "(start one with `ray start --head`, or give --ray-address local)") from None
    head = b""
    with conn, contextlib.suppress(OSError):
        conn.sendall(_H2_PREFACE)
        while len(head) < 9 and (chunk := conn.recv(9 - len(head))):
            head += chunk
    if len(head) < 9 or head[3] != 4:
        raise RayClusterError(f"{where} does not answer as a Ray cluster: give a head node's address "
                              "(`ray start --head` prints it; port 6379 by default), or ray://HOST:10001 for "
                              "a Ray Client server")


def _connect_failure(addr: str, e: Exception) -> str:
    text = " ".join(str(e).split())
    if "Could not find any running Ray instance" in text:
        return ("no running Ray cluster found for --ray-address auto: start one with `ray start --head`, set "
                "RAY_ADDRESS, or give --ray-address local to start one for this run")
    if "uthenticat" in text or "token" in text.lower():
        return (f"the Ray cluster at {addr} refused this driver's token: give it the cluster's token "
                f"(RAY_AUTH_TOKEN or ~/.ray/auth_token): {text[:300]}")
    return f"cannot connect to the Ray cluster at {addr}: {type(e).__name__}: {text[:300]}"


async def run_ray(
    env_source: tuple[str, dict[str, str]],
    env_id: tuple[str, str],
    tasks: Sequence[Task],
    policy: Policy,
    cfg: RolloutConfig,
    on_line: OnLine,
    light: Light,
    *,
    workers: int | None = None,
    offset: int = 0,
    done: Container[tuple[str, int]] = (),
    tasks_blob: bytes | None = None,
) -> None:
    """Run ``cfg.samples`` rollouts of each of ``tasks`` (samples ``offset ..``, less those in
    ``done``) on Ray actors; ``on_line`` receives each finished record, in this process.

    As :func:`~envfoundry.rollout.pool.run_pool`, with ``workers`` actors (None: one per CPU of the
    cluster); :func:`connect` is called first unless this process is connected already.
    """
    ray = ray_module()
    if not ray.is_initialized():
        connect()
    jobs = plan_jobs(tasks, policy, cfg, offset, done, tasks_blob)
    if jobs is None:
        return
    k = workers or int(ray.cluster_resources().get("CPU", 1))
    shares = split_concurrency(cfg.concurrency, max(1, min(k, cfg.concurrency, jobs.n)))
    blob, plan = jobs.blobs()
    driver = _Driver(ray, on_line, jobs.n, shares)
    try:
        driver.start(env_source, env_id, cfg, light, ray.put(blob), ray.put(plan))
        await driver.run()
    except asyncio.CancelledError:
        await driver.hand_over()
        raise
    finally:
        driver.shutdown()
    if driver.failure is not None:
        raise WorkerError(f"{driver.failure}; the stored records are kept and --resume runs the rest")


class _Driver:
    """The driver's side of a Ray run: which actor holds which jobs, and the records coming back."""

    def __init__(self, ray: Any, on_line: OnLine, n: int, shares: list[int]) -> None:
        self.ray, self.on_line, self.n, self.shares = ray, on_line, n, shares
        self.actors: list[Any] = []
        self.size = list(shares)  # each actor's next batch: one rollout per slot at first, then by its speed
        self.load = [0] * len(shares)  # jobs in flight per actor
        self.alive: set[int] = set()
        self.starting: dict[Any, int] = {}  # ready() call -> actor
        self.inflight: dict[Any, tuple[int, int, int, int]] = {}  # run() call -> (actor, lo, hi, attempt)
        self.retry: deque[tuple[int, int, int]] = deque()  # batches lost with an actor: (lo, hi, attempt)
        self.stops: set[Any] = set()  # stop() calls not answered yet
        self.next = 0  # the first job not handed out yet
        self.failure: str | None = None
        self.stopping = False

    def start(self, env_source: tuple[str, dict[str, str]], env_id: tuple[str, str], cfg: RolloutConfig,
              light: Light, tasks_ref: Any, plan_ref: Any) -> None:
        remote = self.ray.remote(Runner)
        for i, share in enumerate(self.shares):
            a = remote.options(num_cpus=1, max_restarts=0, max_concurrency=share + 8, scheduling_strategy="SPREAD",
                               name=None).remote(env_source, env_id, replace(cfg, concurrency=share), light,
                                                 tasks_ref, plan_ref)
            self.actors.append(a)
            self.starting[a.ready.remote()] = i

    async def run(self) -> None:
        t0 = time.monotonic()
        while self.failure is None:
            self._fill()
            if not self.inflight and not (self.starting and self._left()):  # done, or no actor left to do it
                break
            if not self.alive and time.monotonic() - t0 > START_TIMEOUT_S:
                cpus = self.ray.cluster_resources().get("CPU", 0)
                self.failure = (f"no Ray actor started within {START_TIMEOUT_S:.0f}s: each needs a free CPU "
                                f"(the cluster has {cpus:g})")
                break
            await self._receive(WAIT_S)
        if self.failure is None and self._left():
            self.failure = "every Ray actor was lost before the rollouts were done"
        await self.hand_over()

    def _left(self) -> bool:
        """Jobs not handed out yet (or lost, to hand out again)."""
        return bool(self.retry) or self.next < self.n

    def _fill(self) -> None:
        """Hand each live actor batches while it holds fewer jobs than its share plus one batch."""
        for a in sorted(self.alive, key=lambda i: self.load[i]):
            while self.load[a] < self.shares[a] + self.size[a] and self._left():
                if self.retry:
                    lo, hi, attempt = self.retry.popleft()
                else:  # the last batches are smaller, so that every actor gets a part of the tail
                    size = min(self.size[a], max(1, (self.n - self.next) // (2 * len(self.alive))))
                    lo, hi, attempt = self.next, min(self.n, self.next + size), 1
                    self.next = hi
                self.inflight[self.actors[a].run.remote(lo, hi)] = (a, lo, hi, attempt)
                self.load[a] += hi - lo

    async def _receive(self, timeout: float) -> None:
        refs = [*self.inflight, *self.stops, *(() if self.stopping else self.starting)]
        for ref, value, exc in await asyncio.to_thread(_collect, self.ray, refs, timeout):
            if ref in self.stops:
                self.stops.discard(ref)
            elif ref in self.starting:
                self._started(self.starting.pop(ref), value, exc)
            elif ref in self.inflight:
                self._returned(ref, value, exc)

    def _started(self, i: int, info: dict[str, Any] | None, exc: BaseException | None) -> None:
        if exc is not None:
            self._fail(f"Ray actor {i} could not start: {_ray_reason(exc)}")
        elif info is None or info.get("error"):
            self._fail(f"Ray actor {i}: {info.get('error') if info else 'no answer'}")
        elif info.get("version") != __version__:
            self._fail(f"the Ray worker on {info.get('node')} runs envfoundry {info.get('version')}, this driver "
                       f"{__version__}: install the same version on the cluster")
        elif not self.stopping:
            self.alive.add(i)

    def _returned(self, ref: Any, value: Any, exc: BaseException | None) -> None:
        a, lo, hi, attempt = self.inflight.pop(ref)
        self.load[a] -= hi - lo
        if exc is None:
            lines, seconds = value
            for line, lt in lines:
                self.on_line(line, lt)
            self._resize(a, len(lines), seconds)
        elif isinstance(exc, (self.ray.exceptions.RayActorError, self.ray.exceptions.ObjectLostError)):
            # the actor (its process, its node) is gone, and the batch's records with it
            self.alive.discard(a)
            if self.stopping:
                return
            if attempt >= MAX_ATTEMPTS:
                self._fail(f"rollouts were lost with {attempt} Ray actors in turn (the last: {_ray_reason(exc)})")
            else:
                self.retry.append((lo, hi, attempt + 1))
        else:  # the actor's own failure (a model server that died)
            self._fail(_ray_reason(exc))

    def _resize(self, a: int, count: int, seconds: float) -> None:
        """The next batch of actor ``a``: about ``BATCH_S`` of its rollouts (``count`` took ``seconds``,
        alongside others when fewer than its slots), growing at most fourfold at a time."""
        if count and seconds > 0:
            rate = max(count, self.shares[a]) / seconds
            self.size[a] = max(1, min(MAX_BATCH, 4 * self.size[a], int(rate * BATCH_S)))

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why

    async def hand_over(self) -> None:
        """Stop every actor; what they finished comes back (within ``STOP_GRACE_S``) and is stored."""
        if not self.stopping:
            self.stopping = True
            self.stops.update(self.actors[a].stop.remote() for a in self.alive)
        deadline = time.monotonic() + STOP_GRACE_S
        while (self.inflight or self.stops) and (left := deadline - time.monotonic()) > 0:
            await self._receive(min(left, WAIT_S))

    def shutdown(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a, no_restart=True)


def _collect(ray: Any, refs: list[Any], timeout: float) -> list[tuple[Any, Any, BaseException | None]]:
    """(ref, value, exception) of each of ``refs`` that is ready within ``timeout``: run in a thread."""
    if not refs:
        time.sleep(min(timeout, 0.05))
        return []
    ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
    if ready and rest:
        ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
    out: list[tuple[Any, Any, BaseException | None]] = []
    for ref in ready:
        try:
            out.append((ref, ray.get(ref), None))
        except Exception as e:  # noqa: BLE001 - classified by the driver
            out.append((ref, None, e))
    return out


def _ray_reason(exc: BaseException) -> str:
    """A Ray error in one line: the cause raised in the actor where there is one."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EnvfoundryError) and cause.args:
        return str(cause.args[0])
    text = " ".join(str(cause if isinstance(cause, BaseException) else exc).split())
    return text if len(text) <= 400 else text[:399] + "…"
