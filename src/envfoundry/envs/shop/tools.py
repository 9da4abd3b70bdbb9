"""Tools mode: typed tools over the shop world (search, view, cart, coupons, checkout, account)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from envfoundry import Episode, ToolError, World, tool

from . import store
from .account import USER
from .catalog import Catalog, get_catalog, money
from .faults import Faults
from .render import address_line, cart_lines, order_text, payment_line, product_text, result_line
from .search import SORTS
from .vocab import CATEGORIES

PAGE_SIZE = 10
Category = Literal["socks", "shoes", "shirts", "jackets", "bags", "kitchen", "electronics", "accessories"]
Sort = Literal["relevance", "price_asc", "price_desc", "rating", "reviews"]
assert set(Category.__args__) == set(CATEGORIES) and set(Sort.__args__) == set(SORTS)  # type: ignore[attr-defined]


@dataclass
class Shop:
    """Per-episode handles: the cached catalog and the episode's fault injector."""

    cat: Catalog
    faults: Faults

    def dirty(self, world: World) -> set[str]:
        """Variants whose price or stock differ from the catalog (overrides, faults, purchases)."""
        return {c.key for c in self.cat.world.diff(world) if c.table == "variants"}


def shop(ep: Episode) -> Shop:
    s = ep.state.get("shop")
    if s is None:
        p: dict[str, Any] = ep.task.world or {}
        cands = ep.task.data.get("candidates", [])
        faults = Faults(float(p.get("fault_rate", 0.0)), ep.seed,
                        bump_max={c["variant_id"]: c["bump_max"] for c in cands},
                        keep=frozenset(c["variant_id"] for c in cands[-1:]))
        s = ep.state["shop"] = Shop(get_catalog(int(p["catalog_seed"]), int(p["catalog_size"])), faults)
    return s


def enter(ep: Episode, op: str) -> tuple[Shop, World]:
    """Start a call: the shop handles, the world, and any fault that fires now."""
    s, w = shop(ep), ep.world
    assert w is not None
    s.faults.on_call(w, op)
    return s, w


def search_text(s: Shop, w: World, query: str, page: int, **filters: Any) -> str:
    if page < 1:
        raise ToolError(f"page must be at least 1, got {page}")
    n, shown = s.cat.index.search(w, s.dirty(w), query, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE, **filters)
    pages = max(1, -(-n // PAGE_SIZE))
    what = f'"{query}"' if query else "all products"
    used = ", ".join(f"{k}={v}" for k, v in filters.items() if v not in (None, False, "relevance"))
    head = (f"{n} results for {what}" + (f" ({used})" if used else "") +
            f", sorted by {filters.get('sort', 'relevance')}; page {page} of {pages}")
    if not shown:
        return head + ("\nno results; try fewer words or filters" if n == 0 else "\nno results on this page")
    more = f"; page={page + 1} for more" if page < pages else ""
    return "\n".join([head, *[result_line(s.cat, h) for h in shown],
                      f"view_product(product_id) shows sizes, colours, prices and stock{more}"])


@tool
def search(ep: Episode, query: str = "", category: Category | None = None, brand: str | None = None,
           material: str | None = None, max_price: float | None = None, min_rating: float | None = None,
           size: str | None = None, colour: str | None = None, in_stock: bool = False,
           sort: Sort = "relevance", page: int = 1) -> str:
    """Search the catalog by keywords, with optional filters (size, colour and in_stock apply to
    variants; max_price in dollars to the cheapest matching variant). 10 results per page."""
    s, w = enter(ep, "search")
    cents = None if max_price is None else int(round(max_price * 100))
    return search_text(s, w, query, page, category=category, brand=brand, material=material,
                       max_price_cents=cents, min_rating=min_rating, size=size, colour=colour,
                       in_stock=in_stock, sort=sort)


@tool
def view_product(ep: Episode, product_id: str) -> str:
    """A product's details and every variant (size, colour) with its id, price and stock."""
    s, w = enter(ep, "view_product")
    pid = product_id.strip().split("-")[0]
    if w.get("products", pid) is None:
        raise ToolError(f"no product with id {product_id!r} (ids look like P00042; use search)")
    return product_text(s.cat, w, pid)


@tool(writes=True)
def add_to_cart(ep: Episode, product_id: str, size: str = "", colour: str = "", quantity: int = 1) -> str:
    """Add `quantity` of one variant to the cart: a product id with its `size` and `colour`, or a
    variant id (e.g. P00042-3). `size` is the product's size option (shoe size, capacity, length...)."""
    s, w = enter(ep, "add_to_cart")
    vid = store.resolve_variant(s.cat, w, product_id, size, colour)
    ln = store.add_to_cart(s.cat, w, vid, quantity)
    return f"added {quantity} x {ln.describe()} at {money(ln.unit_cents)}\n" + "\n".join(
        cart_lines(store.quote(s.cat, w)))


@tool(writes=True)
def remove_from_cart(ep: Episode, item: str, quantity: int | None = None) -> str:
    """Remove a cart line (variant id, or product id) entirely, or only `quantity` of it."""
    s, w = enter(ep, "remove_from_cart")
    ln = store.remove_from_cart(s.cat, w, item.strip(), quantity)
    return f"removed {ln.describe()}\n" + "\n".join(cart_lines(store.quote(s.cat, w)))


@tool
def view_cart(ep: Episode) -> str:
    """The cart: lines, current prices, coupon, subtotal and total."""
    s, w = enter(ep, "view_cart")
    return "\n".join(cart_lines(store.quote(s.cat, w)))


@tool(writes=True)
def apply_coupon(ep: Episode, code: str) -> str:
    """Apply a coupon code to the cart (one per order; a new one replaces the old one)."""
    s, w = enter(ep, "apply_coupon")
    q, replaced = store.apply_coupon(s.cat, w, code)
    note = f" (replaces {replaced})" if replaced else ""
    return f"coupon {q.coupon} applied{note}: -{money(q.discount)}\n" + "\n".join(cart_lines(q))


@tool
def list_addresses(ep: Episode) -> str:
    """Your saved shipping addresses with their ids."""
    _, w = enter(ep, "list_addresses")
    return "\n".join(address_line(k, a) for k, a in w.rows("addresses") if a["user_id"] == USER)


@tool
def list_payment_methods(ep: Episode) -> str:
    """Your saved cards with their ids and expiry dates."""
    _, w = enter(ep, "list_payment_methods")
    return "\n".join(payment_line(k, p) for k, p in w.rows("payment_methods") if p["user_id"] == USER)


@tool(writes=True)
def add_address(ep: Episode, label: str, street: str, city: str, postcode: str, country: str) -> str:
    """Save a new shipping address."""
    _, w = enter(ep, "add_address")
    u = w.get("users", USER)
    assert u is not None
    key = f"a{w.count('addresses') + 1}"
    while w.get("addresses", key) is not None:
        key += "x"
    rec = {"user_id": USER, "label": label, "recipient": u["name"], "street": street, "city": city,
           "postcode": postcode, "country": country}
    w.insert("addresses", key, rec)
    return "saved " + address_line(key, rec)


@tool(writes=True)
def checkout(ep: Episode, address_id: str, payment_id: str) -> str:
    """Buy everything in the cart, shipping to `address_id` and paying with `payment_id`."""
    s, w = enter(ep, "checkout")
    key = store.checkout(s.cat, w, address_id.strip(), payment_id.strip(), s.faults)
    return "placed " + order_text(s.cat, w, key)


@tool
def view_orders(ep: Episode) -> str:
    """Your orders, newest first."""
    s, w = enter(ep, "view_orders")
    keys = sorted(w.keys("orders"), reverse=True)
    return "\n".join(order_text(s.cat, w, k) for k in keys) or "no orders yet"


TOOLS = (search, view_product, add_to_cart, remove_from_cart, view_cart, apply_coupon, list_addresses,
         list_payment_methods, add_address, checkout, view_orders)
