"""``--model local``: the embedded SmolLM2-135M-Instruct (or any GGUF) behind llama.cpp's server.

The server is started on a free 127.0.0.1 port when the run starts and stopped when it ends,
on Ctrl-C and on errors. llama-cpp-python's server has no parallel slots: concurrent rollouts
queue at the server, so the request timeout is generous and the connection pool small. The
context is SmolLM2's full 8192 tokens: multi-turn tool episodes outgrow 2048 within ~10 turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.env import Episode
from ..core.policy import PolicyOutput
from .local import LocalServer, check_llama_installed, find_default_gguf
from .openai import OpenAIPolicy, RetryConfig, SamplingOptions, ToolMode


class LocalPolicy:
    """An :class:`OpenAIPolicy` talking to a :class:`LocalServer` that it owns."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        sampling: SamplingOptions | None = None,
        retry: RetryConfig | None = None,
        tool_mode: ToolMode = "auto",
        n_ctx: int = 8192,
    ) -> None:
        check_llama_installed()
        self.model_path = Path(model_path) if model_path is not None else find_default_gguf()
        self.spec = "local" if model_path is None else f"local:{model_path}"
        self.server = LocalServer(self.model_path, n_ctx=n_ctx)
        self.sampling = sampling or SamplingOptions()
        self.retry = retry or RetryConfig(request_timeout_s=600.0)
        self.tool_mode: ToolMode = tool_mode
        self.name = self.model_path.stem
        self._policy: OpenAIPolicy | None = None

    async def start(self) -> None:
        await self.server.astart()
        self._policy = OpenAIPolicy(
            self.server.model_name, base_url=self.server.base_url, sampling=self.sampling,
            retry=self.retry, tool_mode=self.tool_mode, concurrency=4,
        )
        await self._policy.start()

    def for_worker(self) -> OpenAIPolicy:
        """What a worker process runs (``rollout.pool``): a client of this policy's started server,
        so any number of workers share one llama.cpp server."""
        if self._policy is None:
            raise RuntimeError("LocalPolicy.for_worker() before start()")
        return self._policy.for_worker()

    async def close(self) -> None:
        try:
            if self._policy is not None:
                await self._policy.close()
        finally:
            await self.server.astop()

    async def act(self, ep: Episode) -> PolicyOutput:
        if self._policy is None:
            raise RuntimeError("LocalPolicy.act() before start()")
        return await self._policy.act(ep)

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "model_file": self.model_path.name,
            "server": "llama-cpp-python",
            "sampling": self.sampling.model_dump(),
            "tool_mode": self.tool_mode,
            "retry": self.retry.model_dump(),
        }
