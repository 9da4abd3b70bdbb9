"""Any envfoundry Environment as what TRL's ``GRPOTrainer`` consumes.

:class:`EnvAdapter` gives

- ``dataset()``: a ``datasets.Dataset`` with one row per task (``prompt``, ``task_id``);
- ``reward_funcs()``: one reward function backed by the environment's graders;
- ``rollout_func()``: for multi-turn environments (tools, or more than one turn), a TRL
  ``rollout_func`` that plays whole episodes with the model being trained.

Single-turn environments (``max_turns == 1``, no tools) use TRL's own generation: ``prompt`` is
the task's chat, and the reward function replays each completion as the episode's one action and
grades it. Multi-turn environments use ``rollout_func``: ``prompt`` is the task id, each episode
is driven turn by turn (model tokens count in the loss, environment tokens are masked out with
``env_mask``), and the score rides along to the reward function as an extra field.

Every completion of a GRPO group plays the same task from the same initial world (``reset``
builds it from the task and forks it per episode) with the same episode seed, so the policy is
the only thing that differs within a group.

Errors are never rewards: an episode that fails in environment code (``env_error``) or whose
grader raises (``grader_error``) gets reward ``None``. TRL (>= 1.16) turns it into NaN, leaves it
out of the group's mean and std and gives it advantage 0; in multi-turn rollouts its tokens are
also masked out of the loss. Each step logs ``envfoundry/masked`` (how many completions were
masked), ``envfoundry/env_error`` and ``envfoundry/grader_error`` and the means of the numeric
parts of the score breakdown (``envfoundry/breakdown/<part>``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.env import Environment, Episode
from ..core.messages import Message
from ..core.outcome import Outcome
from ..core.seeding import derive_seed
from ..core.task import Task
from .chat import chat_dicts, render, to_action
from .policy import generate_ids


@dataclass(slots=True)
class Graded:
    """The result of one training episode: reward None (masked) exactly when outcome is an error."""

    reward: float | None
    outcome: str
    breakdown: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def is_multi_turn(env: Environment) -> bool:
    """Whether episodes of ``env`` can last more than one model turn (tools, or max_turns > 1)."""
    return bool(env.tools) or env.max_turns > 1


def _numeric_leaves(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_numeric_leaves(v, f"{prefix}{k}/" if isinstance(v, dict) else f"{prefix}{k}"))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
        out[prefix.rstrip("/")] = float(d)
    return out


def grade_episode(env: Environment, ep: Episode) -> Graded:
    """Grade a finished episode; a grader that raises gives a masked ``grader_error``."""
    try:
        score = env.grade(ep)
    except Exception as e:  # noqa: BLE001 - a grader error is recorded and masked, never a 0
        return Graded(None, Outcome.GRADER_ERROR.value, error=f"{type(e).__name__}: {e}")
    return Graded(score.value, (Outcome.TRUNCATED if ep.truncated else Outcome.COMPLETED).value, score.breakdown)


class EnvAdapter:
    """An environment and its training tasks, seen from TRL's GRPOTrainer.

    Args:
        env: the environment.
        tasks: the training tasks (e.g. a split's first N, or a calibrated split).
        group_size: completions per task in a GRPO group (TRL's ``num_generations``).
        seed: hashed into every episode seed.
        max_turn_tokens: new tokens per model turn in multi-turn rollouts (the whole episode is
            also bounded by TRL's ``max_completion_length``).
        on_batch: receives a summary dict of every scored batch (the trainer logs them too).
    """

    def __init__(
        self,
        env: Environment,
        tasks: Sequence[Task],
        *,
        group_size: int,
        seed: int = 0,
        max_turn_tokens: int = 256,
        on_batch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if not tasks:
            raise ValueError("no training tasks")
        if group_size < 2:
            raise ValueError(f"a GRPO group needs at least 2 completions, got {group_size}")
        self.env = env
        self.tasks = list(tasks)
        self.by_id = {t.id: t for t in self.tasks}
        self.group_size = group_size
        self.seed = seed
        self.max_turn_tokens = max_turn_tokens
        self.multi_turn = is_multi_turn(env)
        self.on_batch = on_batch
        #: outcome counts over every completion scored so far
        self.totals: Counter[str] = Counter()

    # ------------------------------------------------------------------ data
    def dataset(self) -> Any:
        """One row per task: ``prompt`` (the chat, or the task id for multi-turn) and ``task_id``."""
        from datasets import Dataset

        schemas = self.env.tool_schemas()
        rows = [
            {
                "prompt": t.id if self.multi_turn else chat_dicts(self.env.prompt_messages(t), schemas),
                "task_id": t.id,
            }
            for t in self.tasks
        ]
        return Dataset.from_list(rows)

    def episode_seed(self, task_id: str, step: int, group: int) -> int:
        """The same for every completion of one group: same world, same environment randomness."""
        return derive_seed(self.seed, task_id, "train", step, group)

    # --------------------------------------------------------------- rewards
    def reward_funcs(self) -> list[Callable[..., list[float | None]]]:
        """The reward functions to pass to ``GRPOTrainer(reward_funcs=...)``."""
        adapter = self

        def reward(prompts: list[Any], completions: list[Any], **kw: Any) -> list[float | None]:
            return adapter.score_batch(completions, **kw)

        reward.__name__ = f"env_{self.env.name}"
        return [reward]

    def score_batch(self, completions: list[Any], **kw: Any) -> list[float | None]:
        """Rewards of one generation batch (groups of ``group_size`` consecutive completions)."""
        state = kw.get("trainer_state")
        step = int(getattr(state, "global_step", 0) or 0)
        if self.multi_turn and "env_reward" in kw:
            graded = [
                Graded(r, o, b or {}) for r, o, b in
                zip(kw["env_reward"], kw["env_outcome"], kw.get("env_breakdown") or [{}] * len(completions),
                    strict=True)
            ]
        else:
            graded = [
                self.grade_text(kw["task_id"][i], _text(c), self.episode_seed(kw["task_id"][i], step,
                                                                                i // self.group_size))
                for i, c in enumerate(completions)
            ]
        self._log(graded, step, kw.get("log_metric"), kw.get("log_extra"))
        return [g.reward for g in graded]

    def grade_text(self, task_id: str, text: str, seed: int) -> Graded:
        """Play ``text`` as the one action of a single-turn episode and grade it."""
        task = self.by_id[task_id]
        try:
            ep = self.env.reset(task, seed=seed)
            ep.step(Message("assistant", text))
        except Exception as e:  # noqa: BLE001 - environment code failed: masked, never a 0
            return Graded(None, Outcome.ENV_ERROR.value, error=f"{type(e).__name__}: {e}")
        return grade_episode(self.env, ep)

    def _log(self, graded: list[Graded], step: int, log_metric: Any, log_extra: Any) -> None:
        outcomes = Counter(g.outcome for g in graded)
        self.totals.update(outcomes)
        scored = [g.reward for g in graded if g.reward is not None]
        masked = len(graded) - len(scored)
        groups = [graded[i:i + self.group_size] for i in range(0, len(graded), self.group_size)]
        flat = [{r: g.reward for r, g in enumerate(grp) if g.reward is not None} for grp in groups]
        judged = [v for v in flat if len(v) >= 2]
        zero_var = sum(1 for v in judged if max(v.values()) - min(v.values()) < 1e-9)
        parts: dict[str, list[float]] = {}
        for g in graded:
            if g.reward is not None:
                for k, v in _numeric_leaves(g.breakdown).items():
                    parts.setdefault(k, []).append(v)
        mean = sum(scored) / len(scored) if scored else None
        std = (math.sqrt(sum((x - mean) ** 2 for x in scored) / len(scored))
               if scored and mean is not None else None)
        summary: dict[str, Any] = {
            "step": step, "completions": len(graded), "scored": len(scored), "masked": masked,
            **{o: outcomes.get(o, 0) for o in sorted(Outcome.CODE_ERRORS)},  # masked, never a 0
            "reward_mean": mean, "reward_std": std, "groups": len(groups),
            "zero_variance_groups": zero_var / len(judged) if judged else None,
            "breakdown": {k: sum(v) / len(v) for k, v in parts.items()},
        }
        if log_metric is not None:
            for name in ("masked", *sorted(Outcome.CODE_ERRORS)):
                log_metric(f"envfoundry/{name}", float(summary[name]))
            for k, v in summary["breakdown"].items():
                log_metric(f"envfoundry/breakdown/{k}", v)
        if log_extra is not None:
            log_extra("outcome", [g.outcome for g in graded])
        if self.on_batch is not None:
            self.on_batch(summary)

    # --------------------------------------------------------------- rollout
    def rollout_func(self) -> Callable[[list[Any], Any], dict[str, list[Any]]] | None:
        """TRL's ``rollout_func`` for multi-turn environments (None for single-turn ones)."""
        if not self.multi_turn:
            return None

        def rollout(prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
            model = trainer.accelerator.unwrap_model(trainer.model)
            tok = trainer.processing_class
            step = int(trainer.state.global_step)

            def gen(contexts: list[list[int]], max_new: int) -> list[list[int]]:
                return generate_ids(model, tok, contexts, max_new_tokens=max_new,
                                    temperature=trainer.temperature, top_p=trainer.top_p)

            return self.play(prompts, tok, gen, step=step, max_tokens=int(trainer.max_completion_length))

        return rollout

    def play(
        self,
        task_ids: list[str],
        tokenizer: Any,
        generate: Callable[[list[list[int]], int], list[list[int]]],
        *,
        step: int,
        max_tokens: int,
    ) -> dict[str, list[Any]]:
        """Play one episode per entry of ``task_ids`` (groups of ``group_size`` consecutive
        entries), turn by turn in batches; returns ``rollout_func``'s dict."""
        schemas = self.env.tool_schemas()
        eps = [_Ep(self, tid, i, step, tokenizer, schemas) for i, tid in enumerate(task_ids)]
        while True:
            active = [e for e in eps if not e.done]
            if not active:
                break
            budget = max(max_tokens - len(e.completion) for e in active)
            new = generate([e.prompt + e.completion for e in active], max(1, min(self.max_turn_tokens, budget)))
            for e, ids in zip(active, new, strict=True):
                e.advance(ids[: max(0, max_tokens - len(e.completion))], max_tokens)
        graded = [e.finish() for e in eps]
        return {
            "prompt_ids": [e.prompt for e in eps],
            "completion_ids": [e.completion for e in eps],
            "logprobs": [[0.0] * len(e.completion) for e in eps],  # unused without vLLM
            "env_mask": [e.mask if g.reward is not None else [0] * len(e.mask) for e, g in zip(eps, graded,
                                                                                            strict=True)],
            "env_reward": [g.reward for g in graded],
            "env_outcome": [g.outcome for g in graded],
            "env_breakdown": [g.breakdown for g in graded],
        }


class _Ep:
    """One multi-turn training episode and its token bookkeeping."""

    def __init__(self, ad: EnvAdapter, task_id: str, index: int, step: int, tok: Any,
                 schemas: list[dict[str, Any]]) -> None:
        self.ad, self.tok, self.schemas = ad, tok, schemas
        self.error: str | None = None
        self.done = False
        self.ep: Episode | None = None
        try:
            self.ep = ad.env.reset(ad.by_id[task_id], seed=ad.episode_seed(task_id, step, index // ad.group_size))
            self.text = render(tok, chat_dicts(self.ep.messages, schemas))
        except Exception as e:  # noqa: BLE001
            self.error, self.done, self.text = f"{type(e).__name__}: {e}", True, ""
        self.prompt: list[int] = self._ids(self.text) or [tok.eos_token_id]
        self.completion: list[int] = []
        self.mask: list[int] = []

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) if text else []

    def advance(self, ids: list[int], max_tokens: int) -> None:
        ep = self.ep
        assert ep is not None
        self.completion += ids
        self.mask += [1] * len(ids)
        self.text += self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        action, _ = to_action(self.tok.decode(ids, skip_special_tokens=True), has_tools=bool(self.schemas))
        try:
            res = ep.step(action)
        except Exception as e:  # noqa: BLE001
            self.error, self.done = f"{type(e).__name__}: {e}", True
            return
        if res.terminated or res.truncated:
            self.done = True
            return
        if ep.turns >= self.ad.env.max_turns or len(self.completion) >= max_tokens:
            ep.truncated, self.done = True, True
            return
        full = render(self.tok, chat_dicts(ep.messages, self.schemas))
        n = len(self.text) if full.startswith(self.text) else _common_prefix(full, self.text)
        delta = self._ids(full[n:])
        if len(self.completion) + len(delta) >= max_tokens:
            ep.truncated, self.done = True, True
            return
        self.completion += delta
        self.mask += [0] * len(delta)
        self.text += full[n:]

    def finish(self) -> Graded:
        if self.error is not None or self.ep is None:
            return Graded(None, Outcome.ENV_ERROR.value, error=self.error)
        return grade_episode(self.ad.env, self.ep)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _text(completion: Any) -> str:
    """A TRL completion (text, or a conversational list of messages) as the assistant's text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)
