"""SlotRouter (the local model's parallel slots) against stub servers: no llama.cpp needed."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import envfoundry
from envfoundry.core.errors import PolicyError, ServerUnreachable
from envfoundry.policies.embedded import SlotRouter
from envfoundry.policies.openai import OpenAIPolicy, RetryConfig
from envfoundry.testing import StubServer
from envfoundry.testing.stub_server import unused_port

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


def _fast_retry_router(urls: list[str]) -> SlotRouter:
    retry = RetryConfig(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02, request_timeout_s=5.0)
    return SlotRouter([OpenAIPolicy("stub-model", base_url=u, retry=retry) for u in urls])


def test_a_server_that_goes_down_gets_no_more_requests_and_its_requests_go_elsewhere():
    async def main() -> None:
        async with StubServer(reply="<answer>1</answer>", delay_s=0.01) as a:
            b = StubServer(reply="<answer>1</answer>", delay_s=0.01)
            await b.start()
            router = _fast_retry_router([a.base_url, b.base_url])
            await router.start()
            first = await asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(6)))
            assert b.n_requests > 0  # both were used
            await b.stop()  # the slot's server dies mid-run
            with pytest.warns(RuntimeWarning, match=f"slot {b.base_url} is down, 1 of 2 slots left: "
                              r"model server .* failed 3 times: cannot connect"):
                later = await asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(10)))
            assert len(first) == 6 and len(later) == 10
            assert all(o.action.content == "<answer>1</answer>" for o in first + later)
            assert a.n_requests + b.n_requests == 16  # every request answered once, by a live server
            assert [c.base_url for c in router.live] == [a.base_url]
            # a worker's copy knows which servers are down
            assert [c.base_url for c in router.for_worker().live] == [a.base_url]
            await router.close()

    asyncio.run(main())


def test_when_every_server_is_down_requests_fail_as_policy_errors_and_never_hang():
    async def main() -> None:
        router = _fast_retry_router([f"http://127.0.0.1:{unused_port()}/v1" for _ in range(2)])
        await router.start()
        outs = await asyncio.wait_for(
            asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(4)), return_exceptions=True),
            timeout=20)
        await router.close()
        assert all(isinstance(o, ServerUnreachable) for o in outs), outs
        assert len(router.live) == 1  # the last server is kept: it answers if it comes back

    with pytest.warns(RuntimeWarning, match="1 of 2 slots left"):
        asyncio.run(main())


def test_a_server_that_answers_with_errors_is_not_dropped():
    async def main() -> None:
        async with StubServer("http_500", then="http_500", reply="<answer>1</answer>") as a, \
                StubServer(reply="<answer>1</answer>") as b:
            router = _fast_retry_router([a.base_url, b.base_url])
            await router.start()
            outs = await asyncio.gather(*(router.act(MATH.reset(TASK, seed=i)) for i in range(4)),
                                        return_exceptions=True)
            await router.close()
            errors = [o for o in outs if isinstance(o, Exception)]
            assert errors and all(type(e) is PolicyError for e in errors)  # reached: not "unreachable"
            assert len(router.live) == 2

    asyncio.run(main())
