"""Leased sessions of a served environment: each holds at most one episode (and its world) at a time.

A session is opened by ``POST /sessions`` (HTTP; its lease ends after ``lease_s`` without a request,
or on ``DELETE``) or by a WebSocket connection (its lease ends when the connection does). Either way
the episode and its world are freed when the lease ends. At most ``max_sessions`` are open: one more
is refused at once (503 with ``Retry-After``), never queued. One request per session at a time.

The operations here are synchronous: the app runs them on its worker threads (environment code
may block), so this module holds no I/O. Exceptions in the environment's code become outcomes
(``env_error``, ``grader_error``) with their message, never a dropped connection.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.env import Environment, Episode
from ..core.errors import GraderUndecided, reason
from ..core.grader import GradeInput, combine
from ..core.outcome import Outcome
from ..core.seeding import derive_seed
from ..core.task import Task
from ..core.world import World
from ..remote import wire
from . import catalog
from .errors import ApiError, busy, full, gone, malformed, unknown_session

#: how many ended sessions are remembered, so that their ids get 410 (gone) rather than 404 (unknown)
REMEMBER_ENDED = 10_000
#: a split this large is not searched for an unknown task id (a procedural split may hold millions): the
#: client names the task's split and index, or sends the task whole
SCAN_TASKS = 20_000
#: base worlds kept for clients that mirror worlds (check, audit)
MAX_BASES = 16


@dataclass(eq=False)
class Session:
    id: str
    kind: str  # "http" | "ws"
    last_used: float
    ep: Episode | None = None
    episodes: int = 0
    busy: bool = False
    #: how the current episode ended (an Outcome value), None while it runs
    ended: str | None = None
    graded: dict[str, Any] | None = None
    mirror: bool = False  # send the world, and each step's changes
    prev_world: World | None = None
    want_reference: bool = False


class Sessions:
    """The open sessions of one environment, their leases and the operations on their episodes."""

    def __init__(self, env: Environment, *, max_sessions: int, lease_s: float) -> None:
        self.env, self.max_sessions, self.lease_s = env, max_sessions, lease_s
        self._open: dict[str, Session] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._index: dict[str, tuple[str, int, int]] = {}  # task id -> (split, task seed, index)
        self._indexed: set[tuple[str, int]] = set()
        self.default_split = "test" if "test" in env.splits else env.splits[0]
        # initial worlds are sent as a base world (once per client) and each episode's changes to it
        self._bases: OrderedDict[str, World] = OrderedDict()
        self._instance = secrets.token_hex(4)

    # ------------------------------------------------------------ leases
    def __len__(self) -> int:
        return len(self._open)

    def open(self, kind: str) -> Session:
        with self._lock:
            if len(self._open) >= self.max_sessions:
                raise full(self.max_sessions, 1)
            sid = secrets.token_urlsafe(12)
            s = Session(sid, kind, time.monotonic())
            self._open[sid] = s
            return s

    def get(self, sid: str) -> Session:
        s = self._open.get(sid)
        if s is not None and s.kind == "http" and not s.busy and time.monotonic() - s.last_used > self.lease_s:
            self.end(sid, self._expired)  # the reaper's next round would end it anyway
            s = None
        if s is None:
            why = self._ended.get(sid)
            raise gone(sid, why) if why else unknown_session(sid)
        return s

    @property
    def _expired(self) -> str:
        return f"expired: its lease of {self.lease_s:g}s passed without a request"

    def end(self, sid: str, why: str = "was closed") -> None:
        """End a lease: the episode and its world are dropped."""
        with self._lock:
            s = self._open.pop(sid, None)
            if s is None:
                return
            s.ep = s.prev_world = None
            self._ended[sid] = why
            while len(self._ended) > REMEMBER_ENDED:
                self._ended.popitem(last=False)

    def expire_idle(self, now: float | None = None) -> int:
        """End the HTTP sessions idle longer than the lease (a WebSocket's lease is its connection)."""
        now = time.monotonic() if now is None else now
        stale = [s.id for s in list(self._open.values())
                 if s.kind == "http" and not s.busy and now - s.last_used > self.lease_s]
        for sid in stale:
            self.end(sid, self._expired)
        return len(stale)

    def claim(self, s: Session) -> None:
        """Mark ``s`` as answering a request (one at a time)."""
        with self._lock:
            if s.busy:
                raise busy(s.id)
            if s.id not in self._open:
                self.get(s.id)  # raises: the session ended meanwhile
            s.busy = True

    def release(self, s: Session) -> None:
        s.busy = False
        s.last_used = time.monotonic()

    # ------------------------------------------------------------ tasks
    def tasks(self, split: str, seed: int) -> Sequence[Task]:
        try:
            return self.env.tasks(split, seed=seed)
        except KeyError:
            raise ApiError(404, "unknown_split", f"environment {self.env.name!r} has no split {split!r} "
                           f"(splits: {', '.join(self.env.splits)})") from None

    def _find(self, task_id: str, split: str | None, task_seed: int | None) -> Task | None:
        """A task by id: among those listed or found before, else in the splits small enough to scan."""
        hit = self._index.get(task_id)
        if hit is not None:
            return self.tasks(hit[0], hit[1])[hit[2]]
        wanted = [(split, task_seed or 0)] if split else [(s, task_seed or 0) for s in self.env.splits]
        for sp, ts in wanted:
            if (sp, ts) not in self._indexed and len(self.tasks(sp, ts)) <= SCAN_TASKS:
                for i, t in enumerate(self.tasks(sp, ts)):
                    self._index.setdefault(t.id, (sp, ts, i))
                self._indexed.add((sp, ts))
        hit = self._index.get(task_id)
        return self.tasks(hit[0], hit[1])[hit[2]] if hit else None

    def resolve(self, req: dict[str, Any]) -> Task:
        """The task a reset asks for: a whole task, a task id (with its split, task seed and index as
        hints), an index into a split, or else one drawn from the default split by the episode seed."""
        split, ts, index = req.get("split"), req.get("task_seed"), req.get("index")
        tid = req.get("task_id")
        if req.get("task") is not None:
            hit = self._index.get(tid or req["task"].get("id") or "")
            if hit is not None:  # a task this server listed (a worker process sends tasks whole)
                return self.tasks(hit[0], hit[1])[hit[2]]
            return self._foreign(req["task"])
        if tid is not None:
            if split is not None and index is not None:
                tasks = self.tasks(split, ts or 0)
                if 0 <= index < len(tasks) and tasks[index].id == tid:
                    return tasks[index]
            t = self._find(tid, split, ts)
            if t is None:
                where = f"split {split!r}" if split else f"splits {', '.join(self.env.splits)}"
                raise ApiError(404, "unknown_task", f"task {tid!r} is not a task of {self.env.name} {self.env.version} "
                               f"({where}, task seed {ts or 0}); GET /tasks?split=NAME lists them (a split of "
                               f"more than {SCAN_TASKS:,} tasks is searched only with the task's split and index)")
            return t
        tasks = self.tasks(split or self.default_split, ts or 0)
        if not len(tasks):
            raise ApiError(404, "unknown_task", f"split {split or self.default_split!r} has no tasks")
        if index is None:
            index = derive_seed(req.get("seed") or 0, "task") % len(tasks)
        if not 0 <= index < len(tasks):
            raise ApiError(404, "unknown_task", f"index {index} is outside split {split or self.default_split!r} "
                           f"(0 to {len(tasks) - 1})")
        return tasks[index]

    def _foreign(self, d: Any) -> Task:
        """A whole task sent by the client: its content must match its id, and it must be this environment's."""
        try:
            t = Task.model_validate(d)
        except ValueError as e:
            raise malformed(f"task: {reason(e)}") from None
        try:
            return t.for_env(self.env.name, self.env.version)
        except ValueError as e:
            if t.env == self.env.name and t.env_version:  # a task naming its own version (older sources)
                return t
            raise malformed(f"task: {e}") from None

    def page(self, split: str, seed: int, offset: int, limit: int) -> dict[str, Any]:
        """``GET /tasks``: a page of a split's tasks; each listed task is found by its id from then on."""
        tasks = self.tasks(split, seed)
        out = catalog.task_page(tasks, split=split, seed=seed, offset=offset, limit=limit)
        for i, d in enumerate(out["tasks"]):
            self._index.setdefault(d["id"], (split, seed, offset + i))
        return out

    # ------------------------------------------------------------ operations (run on worker threads)
    def reset(self, s: Session, req: dict[str, Any], task: Task) -> dict[str, Any]:
        seed = req.get("seed") or 0
        s.ep = s.prev_world = s.graded = None
        s.ended = None
        try:
            ep = self.env.reset(task, seed=seed)
        except Exception as e:  # noqa: BLE001 - the environment's code: an env_error, told to the client
            raise ApiError(500, "env_error", f"reset of task {task.id} failed: {wire.crash_summary(e)}",
                           detail=wire.crash_detail(e)) from None
        s.ep, s.episodes = ep, s.episodes + 1
        s.mirror, s.want_reference = bool(req.get("world")), bool(req.get("reference"))
        out: dict[str, Any] = {
            "session_id": s.id, "episode": s.episodes, "task_id": task.id, "seed": seed,
            "observation": {"messages": [] if req.get("brief") else list(self.env.prompt_dicts(task))},
            "reward": None, "done": False, "terminated": False, "truncated": False,
        }
        if req.get("episode_id") is not None:
            out["episode_id"] = req["episode_id"]
        if s.mirror and ep.world_before is not None and ep.world is not None:
            key = self._base_for(ep.world_before)
            out["world_base"] = key
            out["world_changes"] = wire.world_changes(self._bases[key], ep.world_before)
            s.prev_world = ep.world.fork()
        if s.want_reference:
            self._prefetch(s, out)
        return out

    # ------------------------------------------------------------ base worlds
    def _base_for(self, w: World) -> str:
        """The key of a base world that ``w`` is a fork of (a fork of ``w`` itself becomes one)."""
        with self._lock:
            for k, b in self._bases.items():
                if b.shares_root(w):
                    self._bases.move_to_end(k)
                    return k
            key = f"{self._instance}-{len(self._bases)}-{secrets.token_hex(3)}"
            self._bases[key] = w.fork()
            while len(self._bases) > MAX_BASES:
                self._bases.popitem(last=False)
            return key

    def base(self, key: str) -> dict[str, Any]:
        b = self._bases.get(key)
        if b is None:
            raise ApiError(404, "unknown_world_base", f"no base world {key!r} on this server (it restarted, or the "
                           "base was dropped): reset again")
        return {"key": key, "tables": b.to_json()}

    def _world_of(self, req: dict[str, Any], prefix: str) -> World | None:
        """A world sent whole (``world_before``) or as a base world's key and the changes to it."""
        if req.get(f"{prefix}") is not None:
            return World(req[prefix])
        key = req.get("world_base")
        if key is None:
            return None
        b = self._bases.get(key)
        if b is None:
            raise ApiError(404, "unknown_world_base", f"no base world {key!r} on this server: send the world whole")
        w = b.fork()
        wire.apply_changes(w, req.get(f"{prefix}_changes") or [])
        return w

    def _episode(self, s: Session) -> Episode:
        if s.ep is None:
            raise ApiError(409, "no_episode", f"session {s.id!r} has no episode: reset it first")
        return s.ep

    def step(self, s: Session, action: Any) -> dict[str, Any]:
        ep = self._episode(s)
        try:
            msg = wire.action_from_dict(action)
        except wire.WireError as e:
            raise malformed(f"action: {e}") from None
        if s.ended is not None or ep.terminated or ep.truncated:
            raise ApiError(409, "episode_ended", f"the episode of task {ep.task.id} has ended "
                           f"({s.ended or ('truncated' if ep.truncated else 'terminated')}); reset to start another")
        try:
            res = ep.step(msg)
        except Exception as e:  # noqa: BLE001 - a bug in a tool or a simulated user: the rollout's env_error
            s.ended = "env_error"
            return {"observation": {"messages": []}, "reward": None, "done": True, "terminated": False,
                    "truncated": False, "outcome": "env_error", "error": wire.crash_summary(e),
                    "traceback": wire.crash_detail(e)}
        out: dict[str, Any] = {
            "observation": {"messages": [m.to_dict() for m in res.observation]},
            "reward": None, "done": res.terminated or res.truncated,
            "terminated": res.terminated, "truncated": res.truncated,
        }
        if msg.tool_calls:  # the ids the episode gave calls that came without one
            out["call_ids"] = [c.id for c in msg.tool_calls]
        if s.mirror and ep.world is not None and s.prev_world is not None:
            out["changes"] = wire.world_changes(s.prev_world, ep.world)
            s.prev_world = ep.world.fork()
        if out["done"]:
            out.update(self._grade(s, ep))
        elif s.want_reference:
            self._prefetch(s, out)
        return out

    def _grade(self, s: Session, ep: Episode) -> dict[str, Any]:
        if s.graded is not None:
            return s.graded
        out: dict[str, Any]
        try:
            score = self.env.grade(ep)
            outcome = "truncated" if ep.truncated else "completed"
            out = {"outcome": outcome, "score": score.to_dict(), "reward": score.value}
        except Exception as e:  # noqa: BLE001 - the grader's bug: a grader_error, never a score
            outcome = "grader_error"
            out = {"outcome": outcome, "error": wire.crash_summary(e), "traceback": wire.crash_detail(e),
                   "undecided": isinstance(e, GraderUndecided), "reward": None}
        try:
            diff = ep.world_diff_dicts()
        except Exception:  # noqa: BLE001 - a diff that cannot be taken is not the rollout's score
            diff = None
        if diff is not None:
            out["world_diff"] = diff
        s.ended, s.graded = outcome, out
        return out

    def grade(self, s: Session, req: dict[str, Any]) -> dict[str, Any]:
        """Grade the episode (the client ended it: its own turn limit); the result of a finished one again."""
        ep = self._episode(s)
        if s.ended == Outcome.ENV_ERROR:
            raise ApiError(409, "episode_ended", f"the episode of task {ep.task.id} ended with an env_error: "
                           "there is nothing to grade")
        if s.graded is None and req.get("truncated") and not ep.terminated:
            ep.truncated = True
        return self._grade(s, ep)

    def reference(self, s: Session) -> dict[str, Any]:
        ep = self._episode(s)
        if not self.env.has_reference:
            raise ApiError(404, "no_reference", f"environment {self.env.name!r} has no reference solution")
        if s.ended is not None or ep.terminated or ep.truncated:
            raise ApiError(409, "episode_ended", f"the episode of task {ep.task.id} has ended; reset to start another")
        s.want_reference = True  # a policy that asks once asks every turn: send it with the next observations
        try:
            return {"action": wire.action_to_dict(self.env.reference_action(ep))}
        except Exception as e:  # noqa: BLE001
            raise ApiError(500, "env_error", f"the reference solution raised {wire.crash_summary(e)}",
                           detail=wire.crash_detail(e)) from None

    def _prefetch(self, s: Session, out: dict[str, Any]) -> None:
        """The reference solution's next action, sent with the observation (``scripted:oracle`` then
        costs no round trip of its own)."""
        if not self.env.has_reference or s.ep is None:
            return
        try:
            out["reference"] = wire.action_to_dict(self.env.reference_action(s.ep))
        except Exception as e:  # noqa: BLE001 - told when the action is asked for
            out["reference_error"] = f"the reference solution raised {wire.crash_summary(e)}"

    def state(self, s: Session) -> dict[str, Any]:
        ep = s.ep
        out: dict[str, Any] = {"session_id": s.id, "kind": s.kind, "episode": s.episodes,
                               "idle_s": round(time.monotonic() - s.last_used, 3)}
        if s.kind == "http":
            out["lease_s"] = self.lease_s
        if ep is not None:
            out.update(task_id=ep.task.id, seed=ep.seed, turns=ep.turns, terminated=ep.terminated,
                       truncated=ep.truncated, done=s.ended is not None or ep.terminated or ep.truncated,
                       outcome=s.ended, messages=[m.to_dict() for m in ep.messages],
                       step_count=ep.turns, episode_id=str(s.episodes))
        return out

    def end_episode(self, s: Session) -> None:
        s.ep = s.prev_world = s.graded = None
        s.ended = None

    # ------------------------------------------------------------ stateless grading (envfoundry check)
    def grade_input(self, req: dict[str, Any]) -> dict[str, Any]:
        """Grade a trajectory sent whole (task, messages, worlds), by one grader or all: what
        ``envfoundry check`` needs to test a served environment's graders for purity."""
        try:
            task = wire.task_from_dict(req["task"])
            msgs = wire.messages_from(req.get("messages") or [])
            wb = self._world_of(req, "world_before")
        except (KeyError, TypeError, ValueError) as e:
            raise malformed(f"grade: {type(e).__name__}: {e}") from None
        wa = None
        if wb is not None:
            wa = wb.fork()
            wire.apply_changes(wa, req.get("world_changes") or [])
        final = next((m.content for m in reversed(msgs) if m.role == "assistant"), "")
        g = GradeInput(task, tuple(msgs), final, wb, wa, bool(req.get("truncated")))
        name = req.get("grader")
        graders = [(n, w, gr) for n, w, gr in self.env.graders if name is None or n == name]
        if not graders:
            raise ApiError(404, "unknown_grader", f"environment {self.env.name!r} has no grader {name!r} "
                           f"(graders: {', '.join(n for n, _, _ in self.env.graders)})")
        try:
            score = combine([(n, w, gr.grade(g)) for n, w, gr in graders])
        except GraderUndecided as e:
            return {"outcome": "grader_error", "undecided": True, "error": str(e)}
        except Exception as e:  # noqa: BLE001
            return {"outcome": "grader_error", "error": wire.crash_summary(e), "traceback": wire.crash_detail(e)}
        return {"outcome": "completed", "score": score.to_dict()}

    def mutations(self, req: dict[str, Any]) -> dict[str, Any]:
        """The environment's own mutations of a reference solution (``envfoundry audit``)."""
        hook = self.env.mutations
        if hook is None:
            raise ApiError(404, "no_mutations", f"environment {self.env.name!r} declares no mutations")
        try:
            task = wire.task_from_dict(req["task"])
            actions = [wire.action_from_dict(a) for a in req.get("actions") or []]
        except (KeyError, TypeError, ValueError) as e:
            raise malformed(f"mutations: {type(e).__name__}: {e}") from None
        try:
            made = [(n, [wire.action_to_dict(a) for a in acts], kind) for n, acts, kind in hook(task, actions)]
        except Exception as e:  # noqa: BLE001
            raise ApiError(500, "env_error", f"the mutations hook raised {wire.crash_summary(e)}",
                           detail=wire.crash_detail(e)) from None
        return {"mutations": [{"name": n, "actions": a, "kind": k} for n, a, k in made]}
