"""``shop-browser``: the shop as a real web application, operated through Chromium with Playwright.

Each episode gets its own browser context on one shared browser, signed in to its own site of one
shared web server (:mod:`.web_app`), whose world is the task's forked world: grading is the same
field-level world diff as the ``shop`` tools mode, so a task has the same gold outcome in ``shop``,
``shop-web`` and ``shop-browser``. How the browser and the server run beside the engine is in
:mod:`.browser_runtime`.

Observation (:mod:`.browser_observe`): URL, title, HTTP status, the last action's result and the
page's accessibility tree with element ids (``[ref=e12]``); the first one arrives as a user message
right after the task's prompt. With ``screenshots=true`` each step also takes a PNG (base64 in the
step's ``info["screenshot"]`` and in ``ep.state["screenshot"]``: messages are text).

Tools: ``click(id)``, ``fill(id, text)``, ``select(id, option)``, ``press(key)``, ``scroll(direction)``,
``goto(url)`` (the shop's own pages only) and ``back()``. A refused action (an id not on the page, a
value a field does not take) is an error message for the agent; a browser that closed or a page that
crashed ends the rollout as ``env_error``.
"""

from __future__ import annotations

import base64
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from envfoundry import (
    Environment,
    Episode,
    Message,
    ProceduralTasks,
    StepResult,
    Task,
    ToolCallError,
    ToolError,
    UsageError,
    tool,
)

from . import _RULES, SPLIT_SIZES, SPLIT_WEIGHTS, VERSION
from .account import task_world
from .grader import grader
from .tasks import ShopTasks
from .tools import shop

BROWSER_SYSTEM = ("You are a shopping assistant acting for the customer below in an online shop, through a web "
                  "browser. Each observation is the current page: its URL, title, HTTP status, the result of your "
                  "last action and the page's accessibility tree, where every element you can use has an id "
                  "([ref=e12]). Act with click(id), fill(id, text), select(id, option), press(key), "
                  "scroll(direction), goto(url) and back(). " + _RULES)


def _prompt_suffix() -> str:
    from .web_app import PASSWORD

    return ("\n\nThe shop's website is open in your browser at http://shop.test/ and you are signed in. If the shop "
            f"asks you to sign in again, your password is {PASSWORD}. The page you are on comes next.")


class BrowserEpisode(Episode):
    """An episode whose steps run in the browser (on the runtime's loop, see :mod:`.browser_runtime`)."""

    def __init__(self, env: ShopBrowserEnv, task: Task, seed: int, world: Any) -> None:
        super().__init__(env, task, seed, world)
        self.benv = env
        self.handle: Any = None

    def step(self, action: Message) -> StepResult:
        return self.benv.runtime.call(self._step(action))

    async def astep(self, action: Message) -> StepResult:
        return await self.benv.runtime.acall(self._step(action))

    async def aclose(self) -> None:
        if self.handle is not None and not self.handle.closed:
            await self.benv.runtime.acall(self.benv.runtime.release(self.handle))

    async def _step(self, action: Message) -> StepResult:
        action = self.begin_step(action)
        obs: list[Message] = []
        info: dict[str, Any] = {}
        if action.tool_calls:
            for i, call in enumerate(action.tool_calls):
                if not call.id:
                    call.id = f"call_{self.turns}_{i}"
                obs.append(Message("tool", await self._call_async(call.name, call.arguments),
                                   tool_call_id=call.id, name=call.name))
            if self.handle is not None and self.handle.screenshot is not None:
                info["screenshot"] = self.state["screenshot"] = self.handle.screenshot
        else:
            self.terminated = True
        return self.end_step(obs, info)

    async def _call_async(self, name: str, arguments: str | dict[str, Any]) -> str:
        self.tool_calls += 1
        tl = self.env.tools.get(name)
        try:
            if tl is None:
                raise ToolCallError(f"unknown tool '{name}' (tools: {', '.join(self.env.tools)})")
            result = await tl.fn(self, **tl.parse_args(arguments))
        except ToolError as e:
            return f"error: {e}"
        return str(result)


class ShopBrowserEnv(Environment):
    """The shop driven through a real browser (see the module docstring)."""

    asynchronous = True

    def __init__(self, *, runtime: Any, screenshots: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.screenshots = screenshots

    def reset(self, task: Task, *, seed: int) -> Episode:
        return self.runtime.call(self._open(task, seed))

    async def areset(self, task: Task, *, seed: int) -> Episode:
        return await self.runtime.acall(self._open(task, seed))

    async def _open(self, task: Task, seed: int) -> BrowserEpisode:
        from .web_app import Site

        ep = BrowserEpisode(self, task, seed, task_world(task))
        assert ep.world is not None
        h = await self.runtime.open_page(Site(ep.world, shop(ep)))
        ep.handle = h
        weakref.finalize(ep, self.runtime.release_soon, h)
        try:
            text = await _act(ep, "opened the shop's home page", lambda: h.page.goto(self.runtime.origin + "/"))
        except BaseException:
            await self.runtime.release(h)
            raise
        ep.messages.append(Message("user", text))
        return ep

    def close(self) -> None:
        """Stop the browser and the web server now (they also stop at interpreter exit)."""
        self.runtime.close()


# ------------------------------------------------------------------ acting and observing
def _handle(ep: Episode) -> Any:
    h = getattr(ep, "handle", None)
    if h is None or h.closed:
        raise RuntimeError("shop-browser: this episode's browser context is closed")
    return h


_API_PREFIX = re.compile(r"^\w+\.\w+: ")  # "Locator.click: " before Playwright's message


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return _API_PREFIX.sub("", text)


async def observe(ep: Episode, result: str) -> str:
    """The observation of the page as it is now (and the ids the agent may use next)."""
    from . import browser_observe as bo

    env: Any = ep.env
    h = _handle(ep)
    try:
        tree = bo.prune(await h.page.locator("body").aria_snapshot(mode="ai", timeout=env.runtime.nav_timeout_ms))
        title = await h.page.title()
        if env.screenshots:
            h.screenshot = base64.b64encode(await h.page.screenshot(type="png")).decode()
    except Exception as e:  # noqa: BLE001 - classified: a dead browser is the environment's failure
        _raise_if_gone(ep, e)
        raise
    h.refs = {n.ref: n.describe() for n in bo.parse(tree) if n.ref}
    return bo.render(bo.public_url(h.page.url, env.runtime.origin), title, h.status, result, tree)


def _raise_if_gone(ep: Episode, e: BaseException) -> None:
    from .browser_runtime import BrowserGone

    env: Any = ep.env
    why = env.runtime.gone(_handle(ep))
    if why is not None:
        raise BrowserGone(f"shop-browser: {why} during the episode ({_first_line(e)})") from e


async def _act(ep: Episode, what: str, action: Callable[[], Awaitable[Any]]) -> str:
    """Do ``action``, wait for the page it leads to, and observe; a refused action is a ToolError."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    h = _handle(ep)
    env: Any = ep.env
    result = what
    async with env.runtime.slot():
        try:
            await action()
            await h.page.wait_for_load_state("load")
        except PlaywrightTimeout as e:
            _raise_if_gone(ep, e)
            result = f"{what}, but the page did not finish loading ({_first_line(e)})"
        except PlaywrightError as e:
            _raise_if_gone(ep, e)
            raise ToolError(f"{what} failed: {_first_line(e)}") from None
        return await observe(ep, result)


def _target(ep: Episode, id: str) -> tuple[Any, str]:
    """The locator of element ``id`` on the current page and its description, or a ToolError."""
    h = _handle(ep)
    ref = id.strip().strip("[]").removeprefix("ref=")
    if ref.isdigit():  # "12" for the e12 (or f3e12) of this page
        ref = next((r for r in h.refs if r.rpartition("e")[2] == ref), ref)
    if ref not in h.refs:
        ids = list(h.refs)
        shown = f"{ids[0]} to {ids[-1]}" if ids else "none"
        raise ToolError(f"there is no element {id[:40]!r} on this page (ids are the ref=... of the page's elements: "
                        f"{shown})")
    return h.page.locator(f"aria-ref={ref}"), f"{h.refs[ref]} [{ref}]"


@tool(writes=True)
async def click(ep: Episode, id: str) -> str:
    """Click the element with this id (the eN of [ref=eN] in the page): follow a link, press a button, tick a
    radio button or a checkbox."""
    loc, desc = _target(ep, id)
    return await _act(ep, f"clicked {desc}", lambda: loc.click())


@tool
async def fill(ep: Episode, id: str, text: str) -> str:
    """Type `text` into the text field with this id, replacing what it held."""
    loc, desc = _target(ep, id)
    return await _act(ep, f"filled {desc} with {text[:80]!r}", lambda: loc.fill(text))


@tool
async def select(ep: Episode, id: str, option: str) -> str:
    """Choose `option` (its label or value) in the drop-down list with this id."""
    loc, desc = _target(ep, id)
    try:
        opts = await loc.evaluate("e => e.tagName === 'SELECT' ? Array.from(e.options).map(o => [o.value, o.label])"
                                  " : null")
    except Exception as e:  # noqa: BLE001
        _raise_if_gone(ep, e)
        raise ToolError(f"cannot read the options of {desc}: {_first_line(e)}") from None
    if opts is None:
        raise ToolError(f"{desc} is not a drop-down list; use fill for text fields and click for buttons")
    want = option.strip().lower()
    value = next((v for v, label in opts if label.strip().lower() == want), None)
    if value is None:
        value = next((v for v, _label in opts if v.strip().lower() == want), None)
    if value is None:
        labels = ", ".join(repr(label) for _v, label in opts)
        raise ToolError(f"{desc} has no option {option!r}; options: {labels}")
    return await _act(ep, f"selected {option!r} in {desc}", lambda: loc.select_option(value=value))


@tool(writes=True)
async def press(ep: Episode, key: str) -> str:
    """Press a key on the element that has the focus, e.g. Enter (submits a form), Tab, Escape, ArrowDown."""
    if not key.strip() or len(key) > 40:
        raise ToolError(f"press expects a key name such as Enter, Tab or ArrowDown, got {key[:40]!r}")
    h = _handle(ep)

    async def go() -> None:
        focused = h.page.locator(":focus")
        if await focused.count() == 1:
            await focused.press(key)
        else:
            await h.page.keyboard.press(key)

    return await _act(ep, f"pressed {key}", go)


@tool
async def scroll(ep: Episode, direction: Literal["up", "down"]) -> str:
    """Scroll the page up or down by one screen (the tree always shows the whole page)."""
    h = _handle(ep)
    return await _act(ep, f"scrolled {direction}", lambda: h.page.mouse.wheel(0, -800 if direction == "up" else 800))


@tool
async def goto(ep: Episode, url: str) -> str:
    """Open an address of the shop: a path such as /cart or /search?q=socks, or http://shop.test/... ."""
    from .browser_observe import PUBLIC_ORIGIN

    env: Any = ep.env
    origin = env.runtime.origin
    u = url.strip()
    for base in (PUBLIC_ORIGIN, origin, PUBLIC_ORIGIN.split("://", 1)[1]):
        head = u[:len(base)].lower()
        if head == base and u[len(base):len(base) + 1] in ("", "/", "?"):
            u = u[len(base):] or "/"
            break
    else:
        if "://" in u or u.lower().startswith(("javascript:", "data:", "file:", "about:", "chrome:", "blob:")):
            raise ToolError(f"goto only opens the shop's pages ({PUBLIC_ORIGIN}/...), not {url[:100]!r}")
    if not u:
        raise ToolError("goto expects an address such as /cart or http://shop.test/search?q=socks")
    path = u if u.startswith("/") else "/" + u
    h = _handle(ep)
    return await _act(ep, f"opened {PUBLIC_ORIGIN}{path[:200]}", lambda: h.page.goto(origin + path))


@tool
async def back(ep: Episode) -> str:
    """Go back to the previous page."""
    h = _handle(ep)
    moved: list[Any] = []

    async def go() -> None:
        moved.append(await h.page.go_back())

    text = await _act(ep, "went back", go)
    if moved and moved[0] is None:
        return text.replace("Last action: went back", "Last action: there is no previous page", 1)
    return text


TOOLS = (click, fill, select, press, scroll, goto, back)


def make_env(
    catalog_seed: int = 0,
    catalog_size: int = 10_000,
    fault_rate: float | None = None,
    max_turns: int | None = None,
    screenshots: bool = False,
    slow_s: float = 1.0,
) -> Environment:
    """The shop through a real browser, registered as ``shop-browser`` (``--env-arg key=value``).

    ``catalog_seed``/``catalog_size``/``fault_rate``: as for ``shop``; ``max_turns``: default 120;
    ``screenshots``: also take a PNG of each page; ``slow_s``: how long a slow response (then a 504
    page) takes. Needs ``pip install "envfoundry[browser]"`` and Chromium (see :mod:`.browser_runtime`).
    """
    from .browser_runtime import BrowserRuntime, chromium_executable, require_packages

    require_packages()
    seed, size, rate = int(catalog_seed), int(catalog_size), fault_rate
    if rate is not None and not 0.0 <= rate <= 0.5:
        raise UsageError(f"shop-browser: fault_rate must be between 0 and 0.5, got {rate}")
    if not 0.0 <= slow_s <= 60.0:
        raise UsageError(f"shop-browser: slow_s must be between 0 and 60 seconds, got {slow_s}")
    runtime = BrowserRuntime(executable=chromium_executable(), slow_s=float(slow_s))
    gen: list[ShopTasks] = []  # built on first use: listing environments must not build a catalog

    def generate(rng):  # type: ignore[no-untyped-def]
        if not gen:
            gen.append(ShopTasks(system=BROWSER_SYSTEM, prompt_suffix=_prompt_suffix(), catalog_seed=seed,
                                 catalog_size=size, fault_rate=rate))
        return gen[0](rng)

    from .browser_reference import browser_reference

    suffix = "" if (seed, size, rate) == (0, 10_000, None) else f" (catalog {seed}/{size}, fault rate {rate})"
    env = ShopBrowserEnv(
        runtime=runtime,
        screenshots=bool(screenshots),
        name="shop-browser",
        version=VERSION,
        description="Buy the right item in a seeded shop's website through Chromium (click/fill/select/...)" + suffix,
        tasks=ProceduralTasks.source(generate, sizes=SPLIT_SIZES, weights=SPLIT_WEIGHTS),
        tools=TOOLS,
        world=task_world,
        graders=grader,
        reference=browser_reference,
        max_turns=int(max_turns or 120),
    )
    weakref.finalize(env, runtime.close)
    return env


__all__ = ["BROWSER_SYSTEM", "TOOLS", "BrowserEpisode", "ShopBrowserEnv", "make_env", "observe"]
