"""``shop-browser``: the shop as a web application driven through Chromium.

One browser and one web server for the module (as one environment serves a whole run): the
reference solution solves tasks through the browser with the same gold world as the tools mode,
the shop's faults are real web pages, concurrent episodes share the browser without sharing state,
and a dead browser is an env_error."""

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time

import pytest

from envfoundry import Message, ToolCall, ToolError, UsageError
from envfoundry.envs.shop import make_env as make_shop
from envfoundry.envs.shop.browser_observe import read
from envfoundry.envs.shop.browser_runtime import chromium_executable
from envfoundry.envs.shop.faults import SESSION_EXPIRED
from envfoundry.policies import NoopPolicy, OraclePolicy, RandomPolicy
from envfoundry.rollout import RolloutConfig, run_rollout

try:
    chromium_executable()
    import playwright  # noqa: F401
except (UsageError, ImportError) as e:  # pragma: no cover - a machine without a browser
    pytest.skip(f"no browser: {e}", allow_module_level=True)

from envfoundry.envs.shop.browser import make_env  # noqa: E402

SIZE = 1000
IGNORED = ("sessions", "events")


@pytest.fixture(scope="module")
def benv():
    env = make_env(catalog_size=SIZE, slow_s=0.3)
    yield env
    env.close()


def _rollouts(env, tasks, policy, seed=0):
    cfg = RolloutConfig(seed=seed)

    async def go():
        return await asyncio.gather(*(run_rollout(env, t, 0, policy, cfg) for t in tasks))

    return asyncio.run(go())


def _calm(env, n, start=0):
    """``n`` tasks without injected faults."""
    return [t for t in env.tasks("test")[start:start + 60] if t.world["fault_rate"] == 0][:n]


def _diff(rec):
    return sorted((c["table"], c["key"], c["field"], repr(c["after"])) for c in rec["world_diff"]
                  if c["table"] not in IGNORED)


def _obs(ep):
    return read(ep.messages[-1].content)


def _act(ep, name, **args):
    return ep.step(Message("assistant", "", [ToolCall(name, args)])).observation[0].content


def _oracle_until(env, ep, done):
    while not (ep.terminated or ep.truncated) and not done(ep):
        ep.step(env.reference_action(ep))
    return ep


def _pages(ep):
    return [o for m in ep.messages if m.role in ("tool", "user") and (o := read(m.content)) is not None]


# ------------------------------------------------------------------ the same tasks, the same gold world
def test_same_tasks_and_gold_world_as_the_tools_mode(benv):
    tools = make_shop(catalog_size=SIZE)
    for a, b in zip(benv.tasks("test")[:20], tools.tasks("test")[:20], strict=True):
        assert (a.data, a.world, a.metadata) == (b.data, b.world, b.metadata)  # the same problem, other prompt
    picked = _calm(benv, 4)
    by_id = {t.data["candidates"][0]["variant_id"]: t for t in tools.tasks("test")[:60]}
    twins = [by_id[t.data["candidates"][0]["variant_id"]] for t in picked]
    browser, tool = _rollouts(benv, picked, OraclePolicy()), _rollouts(tools, twins, OraclePolicy())
    for rb, rt in zip(browser, tool, strict=True):
        assert rb["outcome"] == rt["outcome"] == "completed" and rb["passed"] and rt["passed"], rb["error"]
        assert _diff(rb) == _diff(rt)  # the same order (key, items, totals, address, card, coupon) and stock
        assert any(c[0] == "orders" for c in _diff(rb))


def test_noop_and_random_do_not_pass(benv):
    tasks = benv.tasks("test")[:4]
    recs = _rollouts(benv, tasks, NoopPolicy()) + _rollouts(benv, tasks, RandomPolicy())
    assert [r["outcome"] for r in recs] == ["completed"] * 8 and not any(r["passed"] for r in recs)


# ------------------------------------------------------------------ faults are web pages
def _fault_on(ep, n, raise_it):
    """Make the episode's ``n``-th request from now fail with ``raise_it(world)``."""
    faults = ep.state["shop"].faults
    real, seen = faults.on_call, []

    def on_call(world, op):
        seen.append(op)
        if len(seen) == n:
            raise_it(world)
        return real(world, op)

    faults.on_call = on_call
    return seen


def test_gateway_errors_are_pages_the_agent_sees_and_retries(benv):
    task = _calm(benv, 1)[0]
    ep = benv.reset(task, seed=1)

    def bad_gateway(world):
        raise ToolError("502 Bad Gateway: the request did not reach the shop. Nothing was changed; please retry")

    _fault_on(ep, 2, bad_gateway)
    _oracle_until(benv, ep, lambda ep: False)
    pages = _pages(ep)
    err = next(p for p in pages if p.status == 502)
    assert err.title.startswith("502 Bad Gateway") and err.find("link", "Try again") is not None
    after = pages[pages.index(err) + 1]
    assert after.status == 200 and after.result.startswith('clicked link "Try again"') and after.url == err.url
    assert benv.grade(ep).passed

    ep = benv.reset(task, seed=1)

    def slow(world):
        raise ToolError("request timed out after 30 s. Nothing was changed; please retry")

    _fault_on(ep, 1, slow)
    t0 = time.perf_counter()
    page = read(_act(ep, "goto", url="/cart"))
    assert page.status == 504 and page.title.startswith("504 Gateway Timeout")
    assert time.perf_counter() - t0 >= 0.3  # the slow response came first


def test_expired_session_redirects_to_sign_in_and_back(benv):
    ep = benv.reset(_calm(benv, 1)[0], seed=2)
    _oracle_until(benv, ep, lambda ep: "Cart (1)" in ep.messages[-1].content or "Cart (2)" in ep.messages[-1]
                  .content or "Cart (3)" in ep.messages[-1].content)

    def expire(world):  # what the shop's session expiry does
        for vid in list(world.keys("cart_items")):
            world.delete("cart_items", vid)
        raise ToolError(SESSION_EXPIRED)

    _fault_on(ep, 1, expire)
    page = read(_act(ep, "goto", url="/account"))
    assert page.path == "/login?next=%2Faccount" and page.title.startswith("Sign in")
    assert any("session expired" in t for t in page.texts()) and page.find("textbox", "Password") is not None
    page = read(_act(ep, "goto", url="/cart"))  # still signed out: every page sends the shopper to sign in
    assert page.path.startswith("/login")
    pw = page.find("textbox", "Password")
    bad = read(_act(ep, "click", id=page.find("button", "Sign in").ref))
    assert any("Wrong email or password" in t for t in bad.texts())
    pw = bad.find("textbox", "Password")
    _act(ep, "fill", id=pw.ref, text="threadline-2025")
    page = read(_act(ep, "click", id=bad.find("button", "Sign in").ref))
    assert page.path == "/cart" and page.find("link", "Cart (0)") is not None  # back where it was, cart emptied
    _oracle_until(benv, ep, lambda ep: False)
    assert benv.grade(ep).passed


def test_price_change_and_sell_out_at_checkout_send_the_shopper_back_to_the_cart(benv):
    task = next(t for t in _calm(benv, 20) if len(t.data["candidates"]) > 1)
    for kind in ("price_change", "sold_out"):
        ep = benv.reset(task, seed=3)
        faults = ep.state["shop"].faults

        def at_checkout(world, lines, kind=kind, faults=faults):
            if faults.count("price_change") + faults.count("sold_out"):
                return
            ln = next(iter(lines))
            if kind == "price_change":
                world.update("variants", ln.variant_id, price_cents=ln.unit_cents + 40)
                faults.log.append({"kind": kind})
            else:
                world.update("variants", ln.variant_id, stock=0)
                faults._event(world, "sold_out", variant_id=ln.variant_id)

        faults.at_checkout = at_checkout
        _oracle_until(benv, ep, lambda ep: False)
        pages = _pages(ep)
        back = next(p for p in pages if p.result.startswith('clicked button "Place order"'))
        assert back.path == "/cart" and back.status == 200
        why = "prices changed" if kind == "price_change" else "sold out and was removed from your cart"
        assert any(why in t for t in back.texts()), back.texts()
        score = benv.grade(ep)
        assert score.passed, score.explanation
        order = next(c for c in ep.world_diff_dicts() if c["table"] == "orders")["after"]
        gold = task.data["candidates"][0 if kind == "price_change" else 1]
        assert order["items"][0]["variant_id"] == gold["variant_id"]
        if kind == "price_change":
            assert order["items"][0]["unit_cents"] == gold["unit_cents"] + 40


# ------------------------------------------------------------------ many episodes, one browser
def test_sixteen_concurrent_episodes_share_one_browser_without_crossing(benv):
    tasks = _calm(benv, 16)
    assert len(tasks) == 16
    rt = benv.runtime
    launches = rt.launches

    async def go():
        eps = await asyncio.gather(*(benv.areset(t, seed=i) for i, t in enumerate(tasks)))
        assert len(rt.webapp.sites) >= 16 and rt.launches == launches  # one browser, one site each
        assert len(rt.browser.contexts) >= 16
        in_cart = [False] * 16
        while not all(in_cart):  # every episode takes one step at a time, all at once: carts fill interleaved
            live = [ep for ep, done in zip(eps, in_cart, strict=True) if not done]
            await asyncio.gather(*(ep.astep(benv.reference_action(ep)) for ep in live))
            in_cart = [any(True for _ in ep.world.keys("cart_items")) for ep in eps]
        for ep, t in zip(eps, tasks, strict=True):
            cart = {vid: r["quantity"] for vid, r in ep.world.rows("cart_items")}
            assert cart == {t.data["candidates"][0]["variant_id"]: t.data["quantity"]}
            assert f"Cart ({t.data['quantity']})" in ep.messages[-1].content
        while not all(ep.terminated for ep in eps):
            await asyncio.gather(*(ep.astep(benv.reference_action(ep)) for ep in eps if not ep.terminated))
        scores = [await benv.agrade(ep) for ep in eps]
        for ep in eps:
            await ep.aclose()
        return eps, scores

    eps, scores = asyncio.run(go())
    assert all(s.passed for s in scores)
    for ep, t in zip(eps, tasks, strict=True):
        new = [c for c in ep.world_diff_dicts() if c["table"] == "orders"]
        assert len(new) == 1 and new[0]["after"]["items"][0]["variant_id"] == t.data["candidates"][0]["variant_id"]
    assert not any(s.world is ep.world for s in rt.webapp.sites.values() for ep in eps)  # closed: forgotten


# ------------------------------------------------------------------ hostile actions
def test_a_browser_without_the_session_cookie_sees_no_shop(benv):
    rt = benv.runtime

    async def visit():
        ctx = await rt.browser.new_context(java_script_enabled=False)
        try:
            page = await ctx.new_page()
            resp = await page.goto(rt.origin + "/cart")
            return resp.status, await page.title()
        finally:
            await ctx.close()

    benv.reset(benv.tasks("test")[0], seed=5)  # a site is open, and the browser is up
    assert rt.call(visit()) == (403, "No shop session · Threadline")


def test_actions_are_checked_and_pages_escape_what_was_typed(benv):
    ep = benv.reset(benv.tasks("test")[0], seed=4)
    home = _obs(ep)
    assert _act(ep, "click", id="e999").startswith("error: there is no element 'e999'")
    assert "goto only opens the shop's pages" in _act(ep, "goto", url="https://example.com/")
    assert "goto only opens" in _act(ep, "goto", url="javascript:alert(1)")
    assert _act(ep, "fill", id=home.find("link", "Your account").ref, text="x").startswith("error: filled")
    assert "not a drop-down" in _act(ep, "select", id=home.find("searchbox").ref, option="x")
    assert _act(ep, "press", key="NoSuchKey").startswith("error: pressed NoSuchKey failed")
    assert "goto only opens" in _act(ep, "goto", url="http://shop.test.evil.example/")
    assert read(_act(ep, "goto", url="HTTP://SHOP.TEST/cart")).path == "/cart"
    assert read(_act(ep, "goto", url="shop.test/orders")).path == "/orders"
    assert _act(ep, "click", id=home.find("link", "Your account").ref).startswith("error: there is no element")
    page = read(_act(ep, "goto", url="//cart/add"))
    assert page.status == 404
    page = read(_act(ep, "goto", url="/cart/add"))
    assert page.status == 405  # forms only: a GET cannot add to the cart
    page = read(_act(ep, "goto", url="/account/addresses/new"))
    for name, text in (("Label (e.g. Home)", "<b>Den</b>"), ("Street", "1 <script>x()</script> St"),
                       ("City", "Oslo"), ("Postcode", "0150"), ("Country", "Norway")):
        _act(ep, "fill", id=page.find("textbox", name).ref, text=text)
    page = read(_act(ep, "click", id=page.find("button", "Save address").ref))
    assert page.path == "/account" and any("<b>Den</b>: " in t and "<script>x()</script>" in t for t in page.texts())
    page = read(_act(ep, "back"))
    assert page.path.startswith("/account/addresses/new")
    assert read(_act(ep, "scroll", direction="down")).path == page.path
    assert benv.grade(ep).value == 0  # a new address is collateral, never a pass


def test_screenshots_come_with_the_step_when_asked(benv):
    ep = benv.reset(benv.tasks("test")[0], seed=6)
    benv.screenshots = True
    try:
        res = ep.step(Message("assistant", "", [ToolCall("goto", {"url": "/cart"})]))
    finally:
        benv.screenshots = False
    png = base64.b64decode(res.info["screenshot"])
    assert png.startswith(b"\x89PNG") and ep.state["screenshot"] == res.info["screenshot"]
    assert "screenshot" not in res.observation[0].content  # messages stay text, and repeat exactly


# ------------------------------------------------------------------ failures of the browser itself
def test_a_closed_browser_or_crashed_page_is_an_env_error(benv):
    rt = benv.runtime

    class Closer(OraclePolicy):
        def __init__(self, how):
            super().__init__()
            self.how = how

        async def act(self, ep):
            if ep.turns == 2:
                await rt.acall(self.how(ep))
            return await super().act(ep)

    async def close_browser(ep):
        await rt.browser.close()

    async def crash_page(ep):
        cdp = await ep.handle.context.new_cdp_session(ep.handle.page)
        with contextlib.suppress(TimeoutError):  # a crashed page never answers
            await asyncio.wait_for(cdp.send("Page.crash"), 1)

    task = _calm(benv, 1)[0]
    for how in (crash_page, close_browser):
        (rec,) = _rollouts(benv, [task], Closer(how))
        assert rec["outcome"] == "env_error" and rec["score"] is None, rec
        assert "BrowserGone" in rec["error"]
    (rec,) = _rollouts(benv, [task], OraclePolicy())  # the next episode gets a new browser
    assert rec["passed"] and rt.browser.is_connected()


def test_missing_browser_or_package_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("ENVFOUNDRY_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(UsageError, match=r"apt-get install chromium.*playwright install chromium"):
        make_env(catalog_size=SIZE)
    monkeypatch.delenv("ENVFOUNDRY_CHROMIUM")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "playwright" else real(name, *a))
    with pytest.raises(UsageError, match=r'pip install "envfoundry\[browser\]"'):
        make_env(catalog_size=SIZE)


_LEAK = """
from envfoundry.envs.shop.browser import make_env
env = make_env(catalog_size=1000)
ep = env.reset(env.tasks("test")[0], seed=0)
print(env.runtime.browser.version, flush=True)
"""


def _browsers_of(pid):
    """Processes whose command line carries the marker of a browser launched by process ``pid``."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.startswith(f"--envfoundry-runtime={pid}-") for a in args):
            out.append(p)
    return out


def test_no_browser_process_outlives_the_interpreter():
    proc = subprocess.Popen([sys.executable, "-c", _LEAK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip(), err
    deadline = time.time() + 10  # the driver takes its browser down as it exits
    while _browsers_of(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _browsers_of(proc.pid)
    assert _browsers_of(os.getpid())  # the marker is there to be found: this module's browser has it
