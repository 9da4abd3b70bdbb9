"""Web mode: the same shop world, seen as text pages with numbered elements.

Every observation is the current page: a title line with the cart count, an optional ``!`` banner
(the result of the last action), text, and elements, one per line, as ``[n] kind: label`` where
kind is ``link``, ``button``, ``field`` (type into it with ``type_text``) or ``option`` (click to
select). The agent has three tools: ``click(element)``, ``type_text(element, text)`` and
``back()``. Page state lives in ``ep.state["web"]``; every write goes through the same shop rules
as the tools mode, and faults fire on clicks (typing and going back stay in the browser).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envfoundry import Episode, ToolError, World, tool

from . import store
from .catalog import money
from .faults import SESSION_EXPIRED
from .render import address_line, cart_lines, order_text, payment_line, product_header, result_line, stock_text
from .search import SORTS, Hit
from .tools import PAGE_SIZE, Shop, shop
from .vocab import CATEGORIES

Element = tuple[str, str, Any]  # (kind, action, argument)


class _Page:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.els: dict[int, Element] = {}

    def text(self, *lines: str) -> None:
        self.lines.extend(lines)

    def el(self, kind: str, label: str, action: str, arg: Any = None) -> None:
        n = len(self.els) + 1
        self.els[n] = (kind, action, arg)
        self.lines.append(f"[{n}] {kind}: {label}")


def _cart_count(world: World) -> int:
    return sum(r["quantity"] for _, r in world.rows("cart_items"))


def _home(pg: _Page, page: Mapping[str, Any]) -> None:
    pg.text("Search the catalog or browse a category.")
    pg.el("field", f'search "{page.get("query", "")}"', "field", "query")
    pg.el("button", "Search", "search")
    pg.el("link", "Cart", "goto", {"kind": "cart"})
    pg.el("link", "Your orders", "goto", {"kind": "orders"})
    pg.el("link", "Your account", "goto", {"kind": "account"})
    pg.text("Browse categories:")
    for c in CATEGORIES:
        pg.el("link", c, "browse", c)


def home_text() -> str:
    """The first page of every episode (the cart starts empty)."""
    pg = _Page()
    _home(pg, {})
    return "\n".join(["== Shop home ==  (cart: 0 items)", *pg.lines])


def _results(pg: _Page, s: Shop, w: World, page: dict[str, Any]) -> str:
    def run(no: int) -> tuple[int, list[Hit]]:
        return s.cat.index.search(w, s.dirty(w), page["query"], category=page.get("category"),
                                  in_stock=page["in_stock"], sort=page["sort"], offset=(no - 1) * PAGE_SIZE,
                                  limit=PAGE_SIZE)

    n, hits = run(page["page"])
    pages = max(1, -(-n // PAGE_SIZE))
    if page["page"] > pages:  # fewer results than when the page was turned
        page["page"] = pages
        n, hits = run(pages)
    no = page["page"]
    where = f" in {page['category']}" if page.get("category") else ""
    pg.text(f'{n} results for "{page["query"]}"{where}, page {no} of {pages}, sorted by {page["sort"]}')
    pg.el("field", f'search "{page.get("field", page["query"])}"', "field", "field")
    pg.el("button", "Search", "search")
    pg.text("Sort by:")
    for srt in SORTS:
        pg.el("option", f"sort {srt}" + (" (selected)" if srt == page["sort"] else ""), "sort", srt)
    pg.el("option", f"in stock only ({'on' if page['in_stock'] else 'off'})", "toggle_stock")
    pg.text("Results:")
    for h in hits:
        pg.el("link", result_line(s.cat, h), "goto", {"kind": "product", "pid": h.product_id})
    if no > 1:
        pg.el("button", "Previous page", "turn", -1)
    if no < pages:
        pg.el("button", "Next page", "turn", 1)
    pg.el("link", "Cart", "goto", {"kind": "cart"})
    pg.el("link", "Home", "goto", {"kind": "home"})
    return "Search results"


def _options(w: World, p: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    sizes: list[str] = []
    colours: list[str] = []
    for vid in p["variant_ids"]:
        v = w.get("variants", vid)
        if v is not None:
            sizes += [v["size"]] if v["size"] not in sizes else []
            colours += [v["colour"]] if v["colour"] not in colours else []
    return sizes, colours


def _product(pg: _Page, s: Shop, w: World, page: dict[str, Any]) -> str:
    p = s.cat.product(page["pid"])
    pg.text(*product_header(p, page["pid"]), f"variants ({p['size_label']}, colour, price, stock):")
    for vid in p["variant_ids"]:
        v = w.get("variants", vid)
        if v is not None:
            pg.text(f"  {store.variant_label(v) or v['size']}  {money(v['price_cents'])}  "
                    f"{stock_text(v['stock'])}")
    sizes, colours = _options(w, p)
    for name, label, values in (("size", p["size_label"], sizes), ("colour", "colour", colours)):
        if len(values) > 1:
            pg.text(f"Choose {label}:")
            for x in values:
                pg.el("option", f"{label} {x}" + (" (selected)" if page.get(name) == x else ""), "select", (name, x))
    sel = _selected(w, p, page)
    if sel is None:
        pg.text("Selected: choose " + " and ".join(n for n, vs in (("a " + p["size_label"], sizes),
                                                                   ("a colour", colours)) if len(vs) > 1))
    else:
        v = w.get("variants", sel)
        assert v is not None
        pg.text(f"Selected: {store.variant_label(v) or v['size']}, {money(v['price_cents'])}, "
                f"{stock_text(v['stock'])}")
    pg.el("field", f'quantity "{page.get("qty", "1")}"', "field", "qty")
    pg.el("button", "Add to cart", "add")
    pg.el("link", "Cart", "goto", {"kind": "cart"})
    pg.el("link", "Home", "goto", {"kind": "home"})
    return "Product"


def _selected(w: World, p: Mapping[str, Any], page: Mapping[str, Any]) -> str | None:
    sizes, colours = _options(w, p)
    size = page.get("size") or (sizes[0] if len(sizes) == 1 else None)
    colour = page.get("colour") or (colours[0] if len(colours) == 1 else None)
    for vid in p["variant_ids"]:
        v = w.get("variants", vid)
        if v is not None and v["size"] == size and v["colour"] == colour:
            return vid
    return None


def _cart(pg: _Page, s: Shop, w: World, page: dict[str, Any]) -> str:
    q = store.quote(s.cat, w)
    for ln, text in zip(q.lines, cart_lines(q), strict=False):
        pg.text("  " + text.split("  ", 1)[1])
        pg.el("button", f"Remove {ln.describe()}", "remove", ln.variant_id)
    pg.text(cart_lines(q)[-1])
    pg.el("field", f'coupon code "{page.get("coupon", "")}"', "field", "coupon")
    pg.el("button", "Apply coupon", "apply")
    if q.lines:
        pg.el("button", "Proceed to checkout", "goto", {"kind": "checkout"})
    pg.el("link", "Home", "goto", {"kind": "home"})
    return "Your cart"


def _checkout(pg: _Page, s: Shop, w: World, page: dict[str, Any]) -> str:
    pg.text("Ship to:")
    for k, a in w.rows("addresses"):
        pg.el("option", "address " + address_line(k, a) + (" (selected)" if page.get("address") == k else ""),
              "select", ("address", k))
    pg.text("Pay with:")
    for k, p in w.rows("payment_methods"):
        pg.el("option", "payment " + payment_line(k, p) + (" (selected)" if page.get("payment") == k else ""),
              "select", ("payment", k))
    summary = cart_lines(store.quote(s.cat, w))
    pg.text("Order summary:", *("  " + x.split("  ", 1)[-1] for x in summary[:-1]), "  " + summary[-1])
    pg.el("button", "Place order", "place")
    pg.el("link", "Back to cart", "goto", {"kind": "cart"})
    pg.el("link", "Home", "goto", {"kind": "home"})
    return "Checkout"


def _simple(pg: _Page, s: Shop, w: World, page: dict[str, Any]) -> str:
    kind = page["kind"]
    if kind == "confirmation":
        pg.text("Thank you! Your order was placed.", order_text(s.cat, w, page["order"]))
        pg.el("link", "Continue shopping", "goto", {"kind": "home"})
        pg.el("link", "Your orders", "goto", {"kind": "orders"})
        return "Order placed"
    if kind == "orders":
        pg.text(*(order_text(s.cat, w, k) for k in sorted(w.keys("orders"), reverse=True)))
        pg.el("link", "Home", "goto", {"kind": "home"})
        return "Your orders"
    pg.text("Addresses:", *("  " + address_line(k, a) for k, a in w.rows("addresses")),
            "Payment methods:", *("  " + payment_line(k, p) for k, p in w.rows("payment_methods")))
    pg.el("link", "Home", "goto", {"kind": "home"})
    return "Your account"


def _state(ep: Episode) -> dict[str, Any]:
    st = ep.state.get("web")
    if st is None:
        pg = _Page()
        _home(pg, {})
        st = ep.state["web"] = {"page": {"kind": "home"}, "history": [], "elements": pg.els, "banner": None}
    return st


def render(ep: Episode) -> str:
    """Render the current page, remember its elements, and clear the banner."""
    st, s, w = _state(ep), shop(ep), ep.world
    assert w is not None
    page, pg = st["page"], _Page()
    kind = page["kind"]
    if kind == "home":
        _home(pg, page)
        title = "Shop home"
    elif kind == "results":
        title = _results(pg, s, w, page)
    elif kind == "product":
        title = _product(pg, s, w, page)
    elif kind == "cart":
        title = _cart(pg, s, w, page)
    elif kind == "checkout":
        title = _checkout(pg, s, w, page)
    else:
        title = _simple(pg, s, w, page)
    st["elements"] = pg.els
    n = _cart_count(w)
    head = [f"== {title} ==  (cart: {n} item{'' if n == 1 else 's'})"]
    if st["banner"]:
        head.append(f"! {st['banner']}")
        st["banner"] = None
    return "\n".join(head + pg.lines)


def _goto(st: dict[str, Any], page: Mapping[str, Any]) -> None:
    st["history"].append(st["page"])
    st["page"] = dict(page)


def _element(st: dict[str, Any], n: int) -> Element:
    els = st["elements"]
    if n not in els:
        raise ToolError(f"there is no element [{n}] on this page (elements are [1] to [{len(els)}])")
    return els[n]


@tool(writes=True)
def click(ep: Episode, element: int) -> str:
    """Click the numbered element: follow a link, press a button or select an option."""
    st, s, w = _state(ep), shop(ep), ep.world
    assert w is not None
    kind, action, arg = _element(st, element)
    if kind == "field":
        raise ToolError(f"element [{element}] is a text field; use type_text({element}, text)")
    try:
        s.faults.on_call(w, "click")
    except ToolError as e:
        if str(e) != SESSION_EXPIRED:
            raise
        st.update(page={"kind": "home"}, history=[],
                  banner="your session expired; you were signed in again, but your cart was emptied")
        return render(ep)
    try:
        _act(st, s, w, action, arg)
    except ToolError as e:
        st["banner"] = f"error: {e}"
    return render(ep)


def _act(st: dict[str, Any], s: Shop, w: World, action: str, arg: Any) -> None:
    page = st["page"]
    if action == "goto":
        _goto(st, arg)
    elif action == "browse":
        _goto(st, {"kind": "results", "query": "", "category": arg, "sort": "relevance", "page": 1,
                   "in_stock": False})
    elif action == "search":
        q = str(page.get("query" if page["kind"] == "home" else "field", page.get("query", ""))).strip()
        _goto(st, {"kind": "results", "query": q, "sort": "relevance", "page": 1, "in_stock": False})
    elif action == "sort":
        page.update(sort=arg, page=1)
    elif action == "toggle_stock":
        page.update(in_stock=not page["in_stock"], page=1)
    elif action == "turn":
        page["page"] = max(1, page["page"] + arg)
    elif action == "select":
        page[arg[0]] = arg[1]
    elif action == "add":
        p = s.cat.product(page["pid"])
        vid = _selected(w, p, page)
        if vid is None:
            raise ToolError(f"choose a {p['size_label']} and a colour first")
        qty = str(page.get("qty", "1")).strip()
        if not qty.isdigit():
            raise ToolError(f"quantity must be a whole number, got {qty!r}")
        ln = store.add_to_cart(s.cat, w, vid, int(qty))
        st["banner"] = f"added {qty} x {ln.describe()} to your cart"
    elif action == "remove":
        ln = store.remove_from_cart(s.cat, w, arg)
        st["banner"] = f"removed {ln.describe()}"
    elif action == "apply":
        q, _ = store.apply_coupon(s.cat, w, str(page.get("coupon", "")))
        st["banner"] = f"coupon {q.coupon} applied: -{money(q.discount)}"
    elif action == "place":
        _place(st, s, w, page)


def _place(st: dict[str, Any], s: Shop, w: World, page: dict[str, Any]) -> None:
    if not page.get("address") or not page.get("payment"):
        raise ToolError("choose a shipping address and a payment method first")
    try:
        key = store.checkout(s.cat, w, page["address"], page["payment"], s.faults)
    except ToolError as e:
        if not any(x in str(e) for x in ("sold out", "prices changed", "no longer applies", "left")):
            raise
        _goto(st, {"kind": "cart"})
        st["banner"] = f"error: {e}"
        return
    st["history"] = []
    st["page"] = {"kind": "confirmation", "order": key}


@tool
def type_text(ep: Episode, element: int, text: str) -> str:
    """Type `text` into the numbered text field (replacing what it held)."""
    st = _state(ep)
    kind, _, arg = _element(st, element)
    if kind != "field":
        raise ToolError(f"element [{element}] is a {kind}, not a text field; use click({element})")
    st["page"][arg] = text
    return render(ep)


@tool
def back(ep: Episode) -> str:
    """Go back to the previous page."""
    st = _state(ep)
    if not st["history"]:
        st["banner"] = "there is no previous page"
    else:
        st["page"] = st["history"].pop()
    return render(ep)


TOOLS = (click, type_text, back)
