"""SlotRouter (the local model's parallel slots) against stub servers: no llama.cpp needed."""

from __future__ import annotations

import asyncio
import pickle

import envfoundry
from envfoundry.policies.embedded import SlotRouter
from envfoundry.policies.openai import OpenAIPolicy
from envfoundry.testing import StubServer

MATH = envfoundry.load("math")
TASK = MATH.tasks("test")[0]


def _router(urls: list[str]) -> SlotRouter:
    return SlotRouter([OpenAIPolicy("stub-model", base_url=u) for u in urls])


def test_each_slot_has_at_most_one_request_and_all_slots_are_used():
    async def main() -> None:
        async with StubServer(reply="<answer>1</answer>", delay_s=0.02) as a, \
                StubServer(reply="<answer>1</answer>", delay_s=0.02) as b, \
                StubServer(reply="<answer>1</answer>", delay_s=0.02) as c:
            router = _router([a.base_url, b.base_url, c.base_url])
            await router.start()
            await asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(30)))
            await router.close()
            served = [s.n_requests for s in (a, b, c)]
            assert sum(served) == 30 and min(served) >= 5, served
            # at most one in flight per server: the stub's own record of overlapping requests
            assert max(s.max_in_flight for s in (a, b, c)) == 1

    asyncio.run(main())


def test_cancelled_requests_give_their_slot_back():
    async def main() -> None:
        async with StubServer(reply="<answer>1</answer>", delay_s=0.2) as a, \
                StubServer(reply="<answer>1</answer>", delay_s=0.2) as b:
            router = _router([a.base_url, b.base_url])
            await router.start()
            tasks = [asyncio.ensure_future(router.act(MATH.reset(TASK, seed=i))) for i in range(6)]
            await asyncio.sleep(0.05)  # two running, four waiting for a slot
            for t in tasks[:4]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert router._idle is not None and router._idle.qsize() == 2
            assert {id(router._idle.get_nowait()) for _ in range(2)} == {id(c) for c in router.clients}
            await router.close()

    asyncio.run(main())


def test_a_router_restarts_in_a_new_event_loop_and_pickles_for_workers():
    with StubServer(reply="<answer>1</answer>").run_in_thread() as url_a, \
            StubServer(reply="<answer>1</answer>").run_in_thread() as url_b:
        router = _router([url_a, url_b])

        async def run_some() -> int:
            await router.start()
            outs = await asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(4)))
            await router.close()
            return len(outs)

        assert asyncio.run(run_some()) == 4
        assert asyncio.run(run_some()) == 4  # a second loop: the queue and sessions are made afresh
        copy = pickle.loads(pickle.dumps(router.for_worker()))
        assert copy._idle is None and all(c._session is None for c in copy.clients)
        assert [c.base_url for c in copy.clients] == [c.base_url for c in router.clients]
        assert asyncio.run(_acts(copy)) == 2


async def _acts(router: SlotRouter) -> int:
    try:
        return len(await asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(2))))
    finally:
        await router.close()
