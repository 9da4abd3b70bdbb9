"""``TransformersPolicy``: a transformers model (e.g. the one being trained) as an envfoundry Policy.

Concurrent ``act`` calls from the rollout engine are gathered into batches and generated together
(left-padded, in a worker thread so the event loop stays free). Greedy decoding (temperature 0,
the default) is deterministic; sampled decoding is seeded per batch, so it also depends on how
rollouts happened to be batched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..core.env import Episode
from ..core.errors import PolicyError
from ..core.outcome import Usage
from ..core.policy import PolicyOutput
from ..core.seeding import derive_seed
from .chat import chat_dicts, render, to_action


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a turn: the tokenizer's EOS and the model's generation EOS ids."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen, int):
        ids.add(gen)
    elif isinstance(gen, (list, tuple)):
        ids.update(int(x) for x in gen)
    return ids


def generate_ids(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    share_prefix: bool = True,
) -> list[list[int]]:
    """New tokens for each prompt (token ids), up to and including the first end-of-turn token.

    ``share_prefix``: compute the prompts' common head once and reuse its KV cache (the outputs
    are the same up to floating-point rounding).
    """
    import torch
    from transformers import GenerationConfig

    if not prompts:
        return []
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Prompts of one environment mostly share a long head (system message, worked examples): it is
    # run once and its KV cache reused by every row; padding sits between the head and each tail.
    head = _common_prefix_len(prompts) if share_prefix and len(prompts) > 1 else 0
    head = head if head >= 16 else 0
    tails = [list(p)[head:] for p in prompts]
    width = head + max(len(t) for t in tails)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if head:
            ids[i, :head] = torch.tensor(list(p)[:head], dtype=torch.long)
            mask[i, :head] = 1
        if tails[i]:
            ids[i, width - len(tails[i]):] = torch.tensor(tails[i], dtype=torch.long)
            mask[i, width - len(tails[i]):] = 1
    stop = eos_ids(model, tokenizer)
    sampled = temperature > 0
    gc = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sampled, pad_token_id=pad, eos_token_id=sorted(stop),
        **({"temperature": temperature, "top_p": top_p, "top_k": 0} if sampled else {}),
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            kw: dict[str, Any] = {}
            if head:
                res = model(input_ids=ids[:1, :head].to(device), use_cache=True)
                name = "cache" if "cache" in res else "past_key_values"  # transformers >= 5.2 says `cache`
                res[name].batch_repeat_interleave(len(prompts))
                kw[name] = res[name]
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gc,
                                 **kw)
    finally:
        if was_training:
            model.train()
    result: list[list[int]] = []
    for row in out[:, width:].tolist():
        for j, t in enumerate(row):
            if t in stop:
                row = row[: j + 1]
                break
        result.append(row)
    return result


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs) - 1  # every row keeps at least one token of its own
    for i in range(max(0, n)):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return max(0, n)


class TransformersPolicy:
    """A local transformers causal LM acting in episodes (text tool protocol when there are tools)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str = "transformers",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = spec
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size
        self.seed = seed
        self._pending: list[tuple[list[int], asyncio.Future[list[int]]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._batches = 0

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "backend": "transformers",
            "sampling": {"temperature": self.temperature, "top_p": self.top_p,
                         "max_tokens": self.max_new_tokens, "seed": self.seed},
            "batch_size": self.batch_size,
        }

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()

    async def act(self, ep: Episode) -> PolicyOutput:
        schemas = ep.env.tool_schemas()
        text = render(self.tokenizer, chat_dicts(ep.messages, schemas))
        prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((prompt, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())
        new = await fut
        out = self.tokenizer.decode(new, skip_special_tokens=True)
        action, problems = to_action(out, has_tools=bool(schemas))
        info: dict[str, Any] = {"tool_call_errors": problems} if problems else {}
        return PolicyOutput(action, Usage(len(prompt), len(new)), info)

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the other rollouts of this tick queue up
        while self._pending:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            batch = [(p, f) for p, f in batch if not f.done()]
            if not batch:
                continue
            self._batches += 1
            try:
                new = await asyncio.to_thread(self._generate, [p for p, _ in batch], self._batches)
            except Exception as e:  # noqa: BLE001 - every waiting rollout ends as policy_error
                for _, f in batch:
                    if not f.done():
                        f.set_exception(PolicyError(f"generation failed: {type(e).__name__}: {e}"))
                continue
            for (_, f), ids in zip(batch, new, strict=True):
                if not f.done():
                    f.set_result(ids)

    def _generate(self, prompts: list[list[int]], batch_no: int) -> list[list[int]]:
        if self.temperature > 0:
            import torch

            torch.manual_seed(derive_seed(self.seed, batch_no) & 0xFFFF_FFFF)
        return generate_ids(self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                            temperature=self.temperature, top_p=self.top_p)
