"""``RemoteEnvironment``: a served environment that run, check, audit, calibrate and train take like a local one.

Tasks, tools, graders, the reference solution and the mutations hook all answer from the server;
prompts are built here from the tasks (the same messages). The engine awaits episodes
(:attr:`asynchronous`): each runs over a WebSocket, and the step that ends it brings its grade, so a
rollout costs one round trip per turn plus the reset. The synchronous methods that ``check`` and
``audit`` call (``reset``, ``step``, ``grade``, ``reference_action``) work too, and their episodes
carry a copy of the world (the server sends it, then each step's changed records), so world
hashes and diffs are taken here as for a local environment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, create_model

from ..core.env import Environment, Episode, StepResult
from ..core.errors import EnvLoadError, GraderUndecided
from ..core.grader import GradeInput
from ..core.messages import Action, Message
from ..core.outcome import Outcome, Score
from ..core.sanitize import register_secret
from ..core.task import Task
from ..core.tools import Tool
from ..core.world import World
from . import wire
from .errors import RemoteEnvError, RemoteError, RemoteGraderError, RemoteRefused
from .transport import Transport

#: tasks fetched per request
PAGE = 500


# ---------------------------------------------------------------- tools and graders that live on the server
def _on_server(ep: Any, **kwargs: Any) -> str:
    raise RuntimeError("a served environment's tools run on its server (step the episode instead)")


@dataclass(slots=True, frozen=True)
class RemoteTool(Tool):
    """A tool of the served environment: its schema as the server states it (it runs there)."""

    remote_schema: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        return self.remote_schema


def _remote_tool(d: dict[str, Any]) -> RemoteTool:
    schema = d["schema"]
    fn = schema.get("function", {})
    params = fn.get("parameters", {}) or {}
    types = {k: str(v.get("type", "any")) for k, v in (params.get("properties") or {}).items()}
    model = create_model(f"{d['name']}_args", __config__=ConfigDict(extra="allow"))
    return RemoteTool(d["name"], _on_server, fn.get("description", ""), bool(d.get("writes")), model, types,
                      remote_schema=schema)


@dataclass
class RemoteGrader:
    """One of the served environment's graders: grades a whole trajectory on the server (``POST /grade``)."""

    name: str
    weight: float
    env: RemoteEnvironment

    def grade(self, g: GradeInput) -> Score:
        body: dict[str, Any] = {"task": wire.task_to_dict(g.task), "messages": [m.to_dict() for m in g.messages],
                                "truncated": g.truncated, "grader": self.name}
        if g.world_before is not None:
            key = self.env._base_key(g.world_before)
            if key is not None:  # a world of one of the server's bases: its key and the changes
                body["world_base"] = key
                body["world_before_changes"] = wire.world_changes(self.env._bases[key], g.world_before)
            else:
                body["world_before"] = g.world_before.to_json()
            if g.world_after is not None:
                body["world_changes"] = wire.world_changes(g.world_before, g.world_after)
        out = self.env._t.lp.run(self.env._t.request("POST", "/grade", body))
        return _score(out, f"grader {self.name!r}")


def _score(out: dict[str, Any], what: str) -> Score:
    if out.get("outcome") == Outcome.GRADER_ERROR:
        if out.get("undecided"):
            raise GraderUndecided(out.get("error") or "undecided")
        e = RemoteGraderError(f"{what} raised on the server: {out.get('error')}", code="grader_error")
        if out.get("traceback"):
            e.add_note(f"on the server:\n{out['traceback']}")
        raise e
    return wire.score_from_dict(out["score"])


class RemoteTasks(Sequence[Task]):
    """A split's tasks on the server, fetched a page at a time as they are read."""

    def __init__(self, env: RemoteEnvironment, split: str, seed: int) -> None:
        self._env, self._split, self._seed = env, split, seed
        self._pages: dict[int, list[Task]] = {}
        self._n: int | None = None

    def _page(self, p: int) -> list[Task]:
        hit = self._pages.get(p)
        if hit is None:
            t = self._env._t
            out = t.lp.run(t.request("GET", "/tasks", params={"split": self._split, "seed": self._seed,
                                                              "offset": p * PAGE, "limit": PAGE}))
            self._n = int(out["total"])
            hit = [wire.task_from_dict(d) for d in out["tasks"]]
            for i, task in enumerate(hit):
                self._env._where[task.id] = (self._split, self._seed, p * PAGE + i)
            self._pages[p] = hit
        return hit

    def __len__(self) -> int:
        if self._n is None:
            self._page(0)
        assert self._n is not None
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"task index {i} out of range ({n} tasks)")
        return self._page(i // PAGE)[i % PAGE]

    def __iter__(self) -> Iterator[Task]:
        for i in range(len(self)):
            yield self[i]


# ---------------------------------------------------------------- the episode
class RemoteEpisode(Episode):
    """An episode running in a session on the server; its messages and flags are kept here too."""

    __slots__ = ("_ws", "_done", "_ref", "_mirror", "_open")

    def __init__(self, env: RemoteEnvironment, task: Task, seed: int, world: World | None, ws: Any,
                 first: dict[str, Any], mirror: bool) -> None:
        super().__init__(env, task, seed, world)
        self._ws, self._mirror, self._open = ws, mirror, True
        self._done: dict[str, Any] | None = None
        self._ref: dict[str, Any] | None = None
        self._take_reference(first)

    def _take_reference(self, data: dict[str, Any]) -> None:
        self._ref = {"action": data["reference"]} if "reference" in data else (
            {"error": data["reference_error"]} if "reference_error" in data else None)

    async def _step_there(self, action: Action) -> StepResult:
        if self.terminated or self.truncated:
            raise RuntimeError("step() called on a finished episode; call env.reset() first")
        if not self._open:
            raise RuntimeError("step() called on a closed remote episode")
        if action.role != "assistant":
            action = Message("assistant", action.content, action.tool_calls)
        env: RemoteEnvironment = self.env  # type: ignore[assignment]
        data = await env._t.call(self._ws, {"type": "step", "data": wire.action_to_dict(action)}, "a step")
        for c, cid in zip(action.tool_calls, data.get("call_ids") or (), strict=False):
            if not c.id:
                c.id = cid
        self.messages.append(action)
        self.turns += 1
        self.tool_calls += len(action.tool_calls)
        if data.get("outcome") == Outcome.ENV_ERROR:
            e = RemoteEnvError(f"the environment raised on the server: {data.get('error')}", code="env_error")
            if data.get("traceback"):
                e.add_note(f"on the server:\n{data['traceback']}")
            raise e
        obs = [Message.from_dict(m) for m in data["observation"]["messages"]]
        self.messages.extend(obs)
        self.terminated, self.truncated = bool(data.get("terminated")), bool(data.get("truncated"))
        if self._mirror and self.world is not None and data.get("changes"):
            wire.apply_changes(self.world, data["changes"])
        if data.get("done"):
            self._done = data
        self._take_reference(data)
        return StepResult(obs, self.terminated, self.truncated)

    async def astep(self, action: Action) -> StepResult:
        env: RemoteEnvironment = self.env  # type: ignore[assignment]
        return await env._t.lp.arun(self._step_there(action))

    def step(self, action: Action) -> StepResult:
        env: RemoteEnvironment = self.env  # type: ignore[assignment]
        return env._t.lp.run(self._step_there(action))

    async def _grade_there(self) -> dict[str, Any]:
        if self._done is not None:  # the step that ended the episode brought its grade
            return self._done
        env: RemoteEnvironment = self.env  # type: ignore[assignment]
        self._done = await env._t.call(self._ws, {"type": "grade", "data": {"truncated": self.truncated}}, "grading")
        return self._done

    async def _reference_there(self) -> dict[str, Any]:
        env: RemoteEnvironment = self.env  # type: ignore[assignment]
        return await env._t.call(self._ws, {"type": "reference"}, "the reference solution")

    def world_diff_dicts(self) -> list[dict[str, Any]] | None:
        if self._mirror:
            return Episode.world_diff_dicts(self)
        return (self._done or {}).get("world_diff")

    async def _close_there(self) -> None:
        if self._open:
            self._open = False
            env: RemoteEnvironment = self.env  # type: ignore[assignment]
            await env._t.release(self._ws)

    async def aclose(self) -> None:
        env: RemoteEnvironment = self.env  # type: ignore[assignment]
        await env._t.lp.arun(self._close_there())

    def close(self) -> None:
        """Free the episode's session on the server now (else when the episode is garbage)."""
        if self._open:
            env: RemoteEnvironment = self.env  # type: ignore[assignment]
            env._t.lp.post(self._close_there())

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# ---------------------------------------------------------------- the environment
_INFO_KEYS = ("name", "splits", "graders", "tools", "max_turns", "has_reference", "version")


def _check_info(url: str, info: Any) -> None:
    """Refuse an answer to ``GET /info`` that is not a served environment's description."""
    missing = [k for k in _INFO_KEYS if k not in info] if isinstance(info, dict) else list(_INFO_KEYS)
    if missing:
        raise EnvLoadError(f"{url} is not an environment served by `envfoundry serve` (GET /info answered "
                           f"without {', '.join(missing)})")


class RemoteEnvironment(Environment):
    """An environment served by ``envfoundry serve`` at ``url``: made by :func:`envfoundry.connect`
    (or ``envfoundry.load(URL)``, ``--env http://HOST:PORT``)."""

    asynchronous = True

    def __init__(self, url: str, token: str | None = None, *, busy_wait_s: float = 600.0,
                 timeout_s: float = 30.0) -> None:
        register_secret(token)
        self._t = Transport(url, token, busy_wait_s=busy_wait_s, timeout_s=timeout_s)
        try:
            info = self._t.lp.run(self._t.request("GET", "/info"), timeout=timeout_s + 5)
            _check_info(url, info)
        except BaseException as e:
            self._t.close()
            if type(e) is RemoteError or (isinstance(e, RemoteRefused) and e.status in (404, 405)):
                raise EnvLoadError(f"{url} is not an environment served by `envfoundry serve` ({e})") from None
            raise
        self.url = self._t.url
        self.info: dict[str, Any] = info
        self._where: dict[str, tuple[str, int, int]] = {}
        self._bases: dict[str, World] = {}  # the server's base worlds, by key (see RemoteEnvironment.reset)
        super().__init__(
            name=info["name"], description=info.get("description") or "",
            splits=info["splits"], tasks=self._remote_tasks,
            graders=[RemoteGrader(g["name"], float(g["weight"]), self) for g in info["graders"]],
            tools=[_remote_tool(d) for d in info["tools"]], reference=_on_server if info["has_reference"] else None,
            max_turns=int(info["max_turns"]), answer_format=info.get("answer_format"),
            mutations=self._remote_mutations if info.get("has_mutations") else None,
        )
        # the server's tasks already carry their environment's name and version (checked there): the
        # version is not "stated" here, so tasks that name their own (older sources) are taken as they are
        self.version = info["version"]
        self.loaded_from = (self.url, {})

    def __repr__(self) -> str:
        return f"RemoteEnvironment({self.name!r}, version={self.version!r}, url={self.url!r})"

    @property
    def content_hash(self) -> str:
        return str(self.info.get("content_hash", ""))

    def _remote_tasks(self, split: str, seed: int) -> Sequence[Task]:
        return RemoteTasks(self, split, seed)

    def _reset_body(self, task: Task, seed: int, *, world: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"seed": seed, "brief": True}
        hint = self._where.get(task.id)
        if hint is not None:
            body.update(task_id=task.id, split=hint[0], task_seed=hint[1], index=hint[2])
        else:  # a task this process did not list (a worker's, or one made here): whole, with its id
            body.update(task_id=task.id, task=wire.task_to_dict(task))
        if world:
            body["world"] = True
        return body

    async def _reset_there(self, task: Task, seed: int, world: bool) -> RemoteEpisode:
        body = {"type": "reset", "data": self._reset_body(task, seed, world=world)}
        for attempt in range(2):
            ws, reused = await self._t.acquire()
            try:
                data = await self._t.call(ws, body, "a reset")
            except RemoteError as e:
                if e.status is not None:  # the server answered (a refusal, a reset that raised): the connection is fine
                    await self._t.release(ws, end=False)
                    raise
                await self._t.discard(ws)
                if reused and attempt == 0:  # a pooled connection the server had closed meanwhile
                    continue
                raise
            except BaseException:
                await self._t.discard(ws)
                raise
            w = None
            if world and data.get("world_base") is not None:
                try:
                    w = await self._world_from(ws, data["world_base"], data.get("world_changes") or [])
                except BaseException:
                    await self._t.discard(ws)
                    raise
            return RemoteEpisode(self, task, seed, w, ws, data, world and w is not None)
        raise AssertionError("unreachable")

    async def _world_from(self, ws: Any, key: str, changes: list[list[Any]]) -> World:
        """An initial world: a fork of the base world ``key`` (fetched once) with ``changes`` applied."""
        base = self._bases.get(key)
        if base is None:
            data = await self._t.call(ws, {"type": "world_base", "data": {"key": key}}, "fetching a world")
            base = self._bases[key] = World(data["tables"])
        w = base.fork()
        wire.apply_changes(w, changes)
        return w

    def _base_key(self, w: World) -> str | None:
        return next((k for k, b in self._bases.items() if b.shares_root(w)), None)

    async def areset(self, task: Task, *, seed: int) -> Episode:
        return await self._t.lp.arun(self._reset_there(task, seed, False))

    def reset(self, task: Task, *, seed: int) -> Episode:
        return self._t.lp.run(self._reset_there(task, seed, True))

    async def agrade(self, ep: Episode) -> Score:
        if not isinstance(ep, RemoteEpisode):
            return self.grade(ep)
        return _score(await self._t.lp.arun(ep._grade_there()), "grading")

    def grade(self, ep: Episode) -> Score:
        if not isinstance(ep, RemoteEpisode):
            return super().grade(ep)
        return _score(self._t.lp.run(ep._grade_there()), "grading")

    def reference_action(self, ep: Episode) -> Action:
        if not self.has_reference:
            raise NotImplementedError(f"environment {self.name!r} has no reference solution")
        if not isinstance(ep, RemoteEpisode):
            raise TypeError("a served environment's reference solution needs one of its own episodes")
        got, ep._ref = ep._ref, None
        if got is None:
            got = self._t.lp.run(ep._reference_there())
        if "error" in got:
            raise RemoteEnvError(got["error"], code="env_error")
        return wire.action_from_dict(got["action"])

    def _remote_mutations(self, task: Task, actions: list[Action]) -> list[tuple[str, list[Action], str]]:
        body = {"task": wire.task_to_dict(task), "actions": [wire.action_to_dict(a) for a in actions]}
        out = self._t.lp.run(self._t.request("POST", "/mutations", body))
        return [(m["name"], [wire.action_from_dict(a) for a in m["actions"]], m["kind"]) for m in out["mutations"]]

    def close(self) -> None:
        """Close the connections to the server (the episodes still open are ended there)."""
        self._t.close()

    def __enter__(self) -> RemoteEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteEnvironment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)
