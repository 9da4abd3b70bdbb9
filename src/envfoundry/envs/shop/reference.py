"""Reference solutions (for ``scripted:oracle``) in both modes.

They read only what an agent sees (the last observation) plus the task's private data (the
ranked gold candidates, address, card, coupon, budget), and recover from every injected fault:
retry after a transient error, add the items again after a session expiry, move to the next
candidate after a sell-out, and re-read the cart (checking the budget) after a price change.
Anything else unexpected raises, so a broken task shows up as a policy error, never as a score.
"""

from __future__ import annotations

import re
from typing import Any

from envfoundry import Episode, Message, ToolCall

from .web import home_text

_MONEY = re.compile(r"\| total \$([\d,]+)\.(\d\d)")
_EL = re.compile(r"^\[(\d+)\] (link|button|field|option): (.*)$")
_FIELD = re.compile(r'^(.*?) "(.*)"$')
_CART = re.compile(r"\(cart: (\d+) items?\)")


def _last_tool_result(ep: Episode) -> str | None:
    m = ep.messages[-1]
    return m.content if m.role == "tool" else None


def _call(ref: dict[str, Any], name: str, **args: Any) -> Message:
    ref["last"] = (name, args)
    return Message("assistant", "", [ToolCall(name, dict(args))])


def _repeat(ref: dict[str, Any]) -> Message:
    name, args = ref["last"]
    return _call(ref, name, **args)


def _check_budget(text: str, budget: int) -> None:
    m = _MONEY.search(text)
    if m is None:
        raise RuntimeError(f"shop reference: no total in {text!r}")
    total = int(m.group(1).replace(",", "")) * 100 + int(m.group(2))
    if total > budget:
        raise RuntimeError(f"shop reference: the cart total {total} exceeds the budget {budget}")


def _after_error(ref: dict[str, Any], text: str) -> bool:
    """Update the plan after a fault; False when the error is not one the shop injects."""
    if "session expired" in text:
        ref.update(in_cart=False, coupon_ok=False, cart_checked=False)
    elif "sold out" in text:
        ref["target"] += 1
        ref.update(viewed=False, searched=False, in_cart=False, coupon_ok=False, cart_checked=False)
    elif "prices changed" in text:
        ref["cart_checked"] = False
    else:
        return False
    return True


def tools_reference(ep: Episode) -> Message:
    d = ep.task.data
    ref = ep.state.setdefault("ref", {"target": 0, "searched": False, "viewed": False, "in_cart": False,
                                      "coupon_ok": False, "cart_checked": False, "addresses": False,
                                      "cards": False, "done": None, "last": None})
    result = _last_tool_result(ep)
    if ref["last"] is not None and result is not None:
        name = ref["last"][0]
        if result.startswith("error:"):
            if "please retry" in result:
                return _repeat(ref)
            if not _after_error(ref, result):
                raise RuntimeError(f"shop reference: unexpected error from {name}: {result}")
        elif name == "search":
            ref["searched"] = True
        elif name == "view_product":
            ref["viewed"] = True
        elif name == "add_to_cart":
            ref["in_cart"] = True
        elif name == "apply_coupon":
            ref["coupon_ok"] = True
        elif name == "view_cart":
            _check_budget(result, d["budget_cents"])
            ref["cart_checked"] = True
        elif name == "list_addresses":
            ref["addresses"] = True
        elif name == "list_payment_methods":
            ref["cards"] = True
        elif name == "checkout":
            ref["done"] = result
    if ref["done"]:
        return Message("assistant", f"Done: {ref['done']}")
    c = d["candidates"][ref["target"]]
    if not ref["searched"]:
        return _call(ref, "search", query=c["title"])
    if not ref["viewed"]:
        return _call(ref, "view_product", product_id=c["product_id"])
    if not ref["in_cart"]:
        return _call(ref, "add_to_cart", product_id=c["product_id"], size=c["size"], colour=c["colour"],
                     quantity=d["quantity"])
    if d["coupon"] and not ref["coupon_ok"]:
        return _call(ref, "apply_coupon", code=d["coupon"])
    if not ref["cart_checked"]:
        return _call(ref, "view_cart")
    if not ref["addresses"]:
        return _call(ref, "list_addresses")
    if not ref["cards"]:
        return _call(ref, "list_payment_methods")
    return _call(ref, "checkout", address_id=d["address_id"], payment_id=d["payment_ids"][0])


def _elements(page: str) -> list[tuple[int, str, str]]:
    out = []
    for line in page.splitlines():
        m = _EL.match(line)
        if m:
            out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def _find(els: list[tuple[int, str, str]], kind: str, pred: Any) -> int | None:
    return next((n for n, k, label in els if k == kind and pred(label)), None)


def _field(els: list[tuple[int, str, str]], name: str) -> tuple[int, str] | None:
    for n, k, label in els:
        m = _FIELD.match(label) if k == "field" else None
        if m and m.group(1) == name:
            return n, m.group(2)
    return None


def web_reference(ep: Episode) -> Message:
    d = ep.task.data
    ref = ep.state.setdefault("wref", {"target": 0, "coupon_ok": False, "last": None, "page": home_text()})
    result = _last_tool_result(ep)
    if result is not None and ref["last"] is not None:
        if result.startswith("error:"):
            if "please retry" in result:
                return _repeat(ref)
            raise RuntimeError(f"shop reference: unexpected error {result}")
        ref["page"] = result
    page: str = ref["page"]
    lines = page.splitlines()
    title = lines[0].split("==")[1].strip()
    banner = lines[1][2:] if len(lines) > 1 and lines[1].startswith("! ") else ""
    if banner.startswith("error:") or "session expired" in banner:
        if not _after_error(ref, banner):
            raise RuntimeError(f"shop reference: unexpected banner {banner!r}")
    m = _CART.search(lines[0])
    cart_n = int(m.group(1)) if m else 0
    if title == "Order placed":
        return Message("assistant", "Done: " + lines[-3])
    c = d["candidates"][ref["target"]]
    els = _elements(page)
    if title in ("Your cart", "Checkout") and d["coupon"] and f"coupon {d['coupon']} -" in page:
        ref["coupon_ok"] = True

    def click(n: int | None) -> Message:
        if n is None:
            raise RuntimeError(f"shop reference: expected element missing on page {title!r}:\n{page}")
        return _call(ref, "click", element=n)

    if cart_n == 0:
        if title == "Product" and any(x.startswith(c["product_id"] + "  ") for x in lines[1:3]):
            for is_colour, want in ((False, c["size"]), (True, c["colour"])):
                n = _find(els, "option", lambda lb, ic=is_colour, w=want:
                          (lb.split(" ", 1)[0] == "colour") == ic and lb.split(" ", 1)[-1] == w)
                if n is not None:  # not selected yet (a selected option's label ends with "(selected)")
                    return click(n)
            qty = _field(els, "quantity")
            if qty and qty[1] != str(d["quantity"]):
                return _call(ref, "type_text", element=qty[0], text=str(d["quantity"]))
            return click(_find(els, "button", lambda lb: lb == "Add to cart"))
        search = _field(els, "search")
        if title == "Search results" and f'results for "{c["title"]}"' in page:
            n = _find(els, "link", lambda lb: lb.startswith(c["product_id"] + "  "))
            return click(n if n is not None else _find(els, "button", lambda lb: lb == "Next page"))
        if search is not None:
            if search[1] != c["title"]:
                return _call(ref, "type_text", element=search[0], text=c["title"])
            return click(_find(els, "button", lambda lb: lb == "Search"))
        return click(_find(els, "link", lambda lb: lb == "Home"))
    if title == "Your cart":
        if d["coupon"] and not ref["coupon_ok"]:
            f = _field(els, "coupon code")
            if f and f[1] != d["coupon"]:
                return _call(ref, "type_text", element=f[0], text=d["coupon"])
            return click(_find(els, "button", lambda lb: lb == "Apply coupon"))
        _check_budget(page, d["budget_cents"])
        return click(_find(els, "button", lambda lb: lb == "Proceed to checkout"))
    if title == "Checkout":
        for prefix in (f"address {d['address_id']}  ", f"payment {d['payment_ids'][0]}  "):
            n = _find(els, "option", lambda lb, p=prefix: lb.startswith(p) and not lb.endswith("(selected)"))
            if n is not None:
                return click(n)
        return click(_find(els, "button", lambda lb: lb == "Place order"))
    return click(_find(els, "link", lambda lb: lb in ("Cart", "Back to cart")))
