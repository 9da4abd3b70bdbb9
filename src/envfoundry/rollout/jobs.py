"""What a backend that runs rollouts elsewhere (worker processes, Ray actors) sends them, and the
checks made before a run directory is written.

A job is a number ``j``: task ``j // samples``, sample ``offset + j % samples``. A fresh run sends
the tasks and nothing per job; a resumed run sends the numbers of the jobs left
(:func:`remaining_jobs`). Workers load the environment by its spec (:func:`load_worker_env`) and
must find the parent's name and version; the policy travels by pickle, after
``policy.for_worker()`` when it has one. Each finished record comes back encoded as its line in
the run store, with its light fields (:data:`OnLine`).
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.env import Environment
from ..core.errors import EnvfoundryError, UsageError
from ..core.policy import Policy
from ..core.task import Task
from .engine import RolloutConfig

#: (encoded record line, the record's light fields) for each finished rollout
OnLine = Callable[[bytes, dict[str, Any]], None]
Light = Callable[[dict[str, Any]], dict[str, Any]]


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


def _dumps(obj: object, what: str, where: str = "workers") -> bytes:
    """``obj`` pickled for worker processes, or a UsageError naming ``what`` cannot be sent."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - anything unpicklable
        fix = "use workers=1" if where == "workers" else "use the local backend"
        raise UsageError(f"{what} cannot be sent to {'worker processes' if where == 'workers' else where} "
                         f"({type(e).__name__}: {e}); {fix}") from None


def worker_policy(policy: Policy, *, check: bool = True) -> Policy:
    """The picklable policy a worker process runs (``policy.for_worker()`` when defined)."""
    fn = getattr(policy, "for_worker", None)
    pol = fn() if callable(fn) else policy
    if check:
        _dumps(pol, f"policy {getattr(policy, 'name', policy)!r}")
    return pol


def check_workers(env: Environment, source: object, tasks: Sequence[Task], policy: Policy, *,
                  need: str = "workers > 1") -> bytes:
    """What workers > 1 (or another ``need``: ``--backend ray``) needs, checked before anything is
    written: an environment that workers can load (``source``: its ``(spec, args)``), and tasks and
    policy that can be sent to them. Returns the pickled tasks (so they are pickled once)."""
    if source is None:
        raise UsageError(f"{need} needs an environment given by name or file spec, or made by "
                         f"envfoundry.load(); {env.name!r} was built in this process only")
    return check_sendable(tasks, policy, where="workers" if need == "workers > 1" else "Ray workers")


def check_sendable(tasks: Sequence[Task], policy: Policy, *, where: str = "workers") -> bytes:
    """Refuse, before a run directory is made, tasks (and a policy without ``for_worker``) that
    cannot be pickled to worker processes; returns the pickled tasks."""
    blob = _dumps(list(tasks), "the tasks", where)
    if not callable(getattr(policy, "for_worker", None)):
        _dumps(worker_policy(policy, check=False), f"policy {getattr(policy, 'name', policy)!r}", where)
    return blob


@dataclass
class Jobs:
    """The rollouts a backend runs elsewhere (worker processes, Ray actors): jobs numbered ``0 .. n - 1``,
    each a position in ``index`` (all of them when None; see :func:`remaining_jobs`)."""

    tasks: Sequence[Task]
    policy: Policy  # as the workers run it (:func:`worker_policy`)
    samples: int
    offset: int
    index: array[int] | None
    what: str  # the policy, for a message
    tasks_blob: bytes | None = None

    @property
    def n(self) -> int:
        return len(self.tasks) * self.samples if self.index is None else len(self.index)

    def blobs(self) -> tuple[bytes, bytes]:
        """The tasks and the plan (policy, samples, offset, index) pickled, each once for every worker."""
        if self.tasks_blob is None:
            self.tasks_blob = _dumps(list(self.tasks), "the tasks")
        return self.tasks_blob, _dumps((self.policy, self.samples, self.offset, self.index), self.what)


def plan_jobs(tasks: Sequence[Task], policy: Policy, cfg: RolloutConfig, offset: int,
              done: Container[tuple[str, int]], tasks_blob: bytes | None) -> Jobs | None:
    """The jobs left to run (None: none), with the policy the workers run."""
    index = remaining_jobs(tasks, cfg.samples, offset, done)
    if not (len(tasks) * cfg.samples if index is None else len(index)):
        return None
    return Jobs(tasks, worker_policy(policy), cfg.samples, offset, index,
                f"policy {getattr(policy, 'name', policy)!r}", tasks_blob)


class WorkerJobs:
    """:class:`Jobs` as a worker holds them: job ``i`` is (task, sample)."""

    def __init__(self, tasks: list[Task], policy: Policy, samples: int, offset: int, index: array[int] | None) -> None:
        self.tasks, self.policy, self.samples, self.offset, self.index = tasks, policy, samples, offset, index
        self.n = len(tasks) * samples if index is None else len(index)

    @classmethod
    def loads(cls, tasks_blob: bytes, plan: bytes) -> WorkerJobs:
        """From :meth:`Jobs.blobs`; the environment is loaded first (task data may hold its classes)."""
        return cls(pickle.loads(tasks_blob), *pickle.loads(plan))

    def __getitem__(self, i: int) -> tuple[Task, int]:
        j = i if self.index is None else self.index[i]
        return self.tasks[j // self.samples], self.offset + j % self.samples


def load_worker_env(env_source: tuple[str, dict[str, str]], env_id: tuple[str, str], *, where: str = "a worker process",
                    need: str = "workers > 1") -> Environment:
    """The environment loaded by its spec in a worker; a WorkerError unless it is ``env_id`` (name, version)."""
    from ..core.loading import load

    env = load(*env_source)
    if (env.name, env.version) != env_id:
        raise WorkerError(f"environment {env_source[0]!r} loads as {env.name} {env.version} in {where}, "
                          f"not {env_id[0]} {env_id[1]}; a built-in or file environment is needed for {need}")
    return env


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
