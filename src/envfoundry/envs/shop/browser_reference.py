"""The reference solution of ``shop-browser`` (for ``scripted:oracle``): browser actions computed from the page.

It reads only the last observation (the accessibility tree with its element ids) plus the task's
private data (the ranked gold candidates, the address label, the card, the coupon, the budget), and
recovers from every fault the shop injects as a real shopper would: "Try again" on a gateway error
page, signing in again after the session expired (then filling the emptied cart again), moving to
the next candidate after a sell-out, and re-reading the cart (checking the budget) after a price
change. Anything else unexpected raises, so a broken task shows up as a policy error, never as a score.
"""

from __future__ import annotations

import re
from typing import Any

from envfoundry import Episode, Message, ToolCall

from .account import account_tables
from .browser_observe import Node, Observation, read
from .web_app import PASSWORD
from .web_app_pages import card_text

_TOTAL = re.compile(r"Total: \$([\d,]+)\.(\d\d)")


def _call(name: str, **args: Any) -> Message:
    return Message("assistant", "", [ToolCall(name, dict(args))])


def _selected(obs: Observation, box: Node) -> str | None:
    i = obs.nodes.index(box)
    for n in obs.nodes[i + 1:]:
        if n.depth <= box.depth:
            break
        if n.role == "option" and "selected" in n.states:
            return n.name
    return None


def _total(obs: Observation) -> int | None:
    for text in obs.texts():
        m = _TOTAL.search(text)
        if m:
            return int(m.group(1).replace(",", "")) * 100 + int(m.group(2))
    return None


def _need(obs: Observation, node: Node | None, what: str) -> Node:
    if node is None or not node.ref:
        names = "; ".join(n.describe() for n in obs.nodes if n.ref)[:1500]
        raise RuntimeError(f"shop reference: no {what} on {obs.url} ({obs.title}); elements: {names}")
    return node


def browser_reference(ep: Episode) -> Message:
    d = ep.task.data
    ref = ep.state.setdefault("bref", {"target": 0, "doc": None})
    last = ep.messages[-1]
    if last.role == "tool" and last.content.startswith("error:"):
        raise RuntimeError(f"shop reference: unexpected {last.content}")
    obs = read(last.content)
    if obs is None:
        raise RuntimeError(f"shop reference: not a page: {last.content[:300]!r}")
    messages = [n.value or n.name for n in obs.nodes if n.role in ("alert", "status")]
    doc = next((n.ref.rpartition("e")[0] for n in obs.nodes if n.ref), "")
    if (obs.url, doc) != ref["doc"]:  # a page's messages count once (a fill or a select shows them again)
        ref["doc"] = (obs.url, doc)
        if any("sold out" in m for m in messages):
            ref["target"] += 1
    if obs.status is not None and obs.status >= 500:
        return _call("click", id=_need(obs, obs.find("link", "Try again"), "'Try again' link").ref)
    if obs.path.startswith("/login"):
        if obs.result.startswith('filled textbox "Password"'):
            return _call("click", id=_need(obs, obs.find("button", "Sign in"), "'Sign in' button").ref)
        return _call("fill", id=_need(obs, obs.find("textbox", "Password"), "password field").ref, text=PASSWORD)
    if obs.path.startswith("/orders/") and any("was placed" in m for m in messages):
        return Message("assistant", "Done: " + next(m for m in messages if "was placed" in m))
    cart = obs.find("link", prefix="Cart (")
    cart_n = int(cart.name[6:-1]) if cart is not None and cart.name[6:-1].isdigit() else 0
    if cart_n == 0:
        return _find_and_add(obs, d, d["candidates"][ref["target"]])
    if obs.path == "/cart":
        return _cart(obs, d)
    if obs.path == "/checkout":
        return _checkout(obs, ep)
    return _call("click", id=_need(obs, cart, "cart link").ref)


def _find_and_add(obs: Observation, d: dict[str, Any], c: dict[str, Any]) -> Message:
    if obs.path == f"/p/{c['product_id']}":
        for box in (n for n in obs.nodes if n.role == "combobox" and n.ref):
            want = c["colour"] if box.name == "Colour" else c["size"]
            if _selected(obs, box) != want:
                return _call("select", id=box.ref, option=want)
        qty = _need(obs, obs.find("textbox", "Quantity"), "quantity field")
        if qty.value != str(d["quantity"]):
            return _call("fill", id=qty.ref, text=str(d["quantity"]))
        return _call("click", id=_need(obs, obs.find("button", "Add to cart"), "'Add to cart' button").ref)
    box = _need(obs, obs.find("searchbox", "Search products"), "search box")
    if obs.path.startswith("/search") and box.value == c["title"]:
        link = next((n for n in obs.nodes if n.role == "link" and n.url == f"/p/{c['product_id']}"), None)
        if link is None:
            link = _need(obs, obs.find("link", "Next page"), f"link to {c['product_id']} or 'Next page'")
        return _call("click", id=link.ref)
    if box.value != c["title"]:
        return _call("fill", id=box.ref, text=c["title"])
    return _call("click", id=_need(obs, obs.find("button", "Search"), "'Search' button").ref)


def _cart(obs: Observation, d: dict[str, Any]) -> Message:
    code = d["coupon"]
    if code and not any(t.startswith(f"Coupon {code}:") for t in obs.texts()):
        field = _need(obs, obs.find("textbox", "Coupon code"), "coupon field")
        if field.value != code:
            return _call("fill", id=field.ref, text=code)
        return _call("click", id=_need(obs, obs.find("button", "Apply coupon"), "'Apply coupon' button").ref)
    total = _total(obs)
    if total is None:
        raise RuntimeError(f"shop reference: no total in the cart on {obs.url}")
    if total > d["budget_cents"]:
        raise RuntimeError(f"shop reference: the cart total {total} exceeds the budget {d['budget_cents']}")
    return _call("click", id=_need(obs, obs.find("link", "Proceed to checkout"), "checkout link").ref)


def _checkout(obs: Observation, ep: Episode) -> Message:
    d = ep.task.data
    cards = account_tables(int((ep.task.world or {})["account_seed"]))["payment_methods"]
    card = card_text(cards[d["payment_ids"][0]])
    wanted = (("address", lambda n: n.name.startswith(d["address_label"] + ": ")), ("card", lambda n: n.name == card))
    for what, match in wanted:
        radio = _need(obs, next((n for n in obs.nodes if n.role == "radio" and match(n)), None), f"{what} choice")
        if "checked" not in radio.states:
            return _call("click", id=radio.ref)
    return _call("click", id=_need(obs, obs.find("button", "Place order"), "'Place order' button").ref)
