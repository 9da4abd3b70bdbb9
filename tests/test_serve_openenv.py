"""OpenEnv's own client drives a served environment over WebSocket (its reset, step, state and close
messages). OpenEnv is optional: `pip install openenv==0.10.0` (its import alone takes seconds: gradio)."""

import asyncio

import pytest

from tests.envs import slow
from tests.test_serve_hostile import serving


def test_openenv_client_drives_a_served_environment():
    try:
        from openenv.core.generic_client import GenericEnvClient
    except ImportError:
        pytest.skip("openenv is not installed (pip install openenv==0.10.0): OpenEnv's client is not tested")

    async def go(url: str) -> None:
        async with GenericEnvClient(base_url=url) as client:
            r = await client.reset(index=3, seed=1)
            assert not r.done and r.observation["messages"][-1]["content"] == "say 3"
            r = await client.step({"content": "3"})
            assert r.done and r.reward == 1.0
            state = await client.state()
            assert state["turns"] == 1 and state["outcome"] == "completed"
            await client.reset(index=0)
            r = await client.step({"tool_calls": [{"name": "explode", "arguments": {"n": 2}}]})
            assert r.done and r.reward is None  # the tool's bug: an env_error, not a reward of 0
            with pytest.raises(RuntimeError, match="episode_ended"):
                await client.step({"content": "late"})

    with serving(slow.make_buggy_tool()) as url:
        asyncio.run(go(url))
