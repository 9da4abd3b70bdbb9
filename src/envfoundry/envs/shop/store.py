"""The shop's rules, shared by the tools and web modes: cart, coupons, pricing and checkout.

Every write goes through here, so an order can only exist with totals the shop computed: the
agent chooses what to buy, never what it costs. Failures raise :class:`ToolError` with a message
the agent can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envfoundry import ToolError, World

from .account import SESSION, TODAY, USER
from .catalog import Catalog, money
from .faults import Faults


@dataclass(frozen=True, slots=True)
class Line:
    variant_id: str
    product_id: str
    title: str
    category: str
    size: str
    colour: str
    quantity: int
    unit_cents: int  # the current price
    seen_cents: int  # the price when the shopper last saw it in the cart
    stock: int

    def describe(self) -> str:
        opts = ", ".join(x for x in (self.size if self.size != "one size" else "", self.colour) if x)
        return f"'{self.title}' ({opts})"


@dataclass(frozen=True, slots=True)
class Quote:
    lines: tuple[Line, ...]
    subtotal: int
    discount: int
    coupon: str | None
    total: int


def variant_label(v: Mapping[str, Any]) -> str:
    return ", ".join(x for x in (v["size"] if v["size"] != "one size" else "", v["colour"]) if x)


def cart(cat: Catalog, world: World) -> tuple[Line, ...]:
    out = []
    for vid, item in world.rows("cart_items"):
        v = world.get("variants", vid)
        assert v is not None
        p = cat.product(v["product_id"])
        out.append(Line(vid, v["product_id"], p["title"], p["category"], v["size"], v["colour"],
                        item["quantity"], v["price_cents"], item["seen_cents"], v["stock"]))
    return tuple(out)


def resolve_variant(cat: Catalog, world: World, product_id: str, size: str, colour: str) -> str:
    """The variant of ``product_id`` with this size and colour (a variant id is accepted too)."""
    pid = product_id.strip()
    if world.get("variants", pid) is not None:
        return pid
    p = world.get("products", pid)
    if p is None:
        raise ToolError(f"no product with id {pid!r}; ids look like "
                        f"'{next(iter(cat.by_kind.values()))[0]}' (use search to find them)")
    vs = {vid: world.get("variants", vid) for vid in p["variant_ids"]}
    sizes = sorted({v["size"] for v in vs.values() if v}, key=str)
    colours = sorted({v["colour"] for v in vs.values() if v})
    want_s, want_c = size.strip().lower(), colour.strip().lower()
    if not want_s and len(sizes) == 1:
        want_s = sizes[0].lower()
    if not want_c and len(colours) == 1:
        want_c = colours[0]
    label = p["size_label"]
    if not want_s:
        raise ToolError(f"{pid} comes in several {label}s ({', '.join(sizes)}); say which with `size`")
    if not want_c:
        raise ToolError(f"{pid} comes in several colours ({', '.join(colours)}); say which with `colour`")
    for vid, v in vs.items():
        if v and v["size"].lower() == want_s and v["colour"] == want_c:
            return vid
    if want_s not in (s.lower() for s in sizes):
        raise ToolError(f"{pid} has no {label} {size!r}; {label}s: {', '.join(sizes)}")
    if want_c not in colours:
        raise ToolError(f"{pid} has no colour {colour!r}; colours: {', '.join(colours)}")
    raise ToolError(f"{pid} is not made in {label} {size} and colour {colour} together")


def add_to_cart(cat: Catalog, world: World, vid: str, quantity: int) -> Line:
    if quantity < 1:
        raise ToolError(f"quantity must be at least 1, got {quantity}")
    v = world.get("variants", vid)
    assert v is not None
    item = world.get("cart_items", vid)
    have = item["quantity"] if item else 0
    title = cat.product(v["product_id"])["title"]
    if v["stock"] <= 0:
        raise ToolError(f"'{title}' ({variant_label(v)}) is out of stock")
    if have + quantity > v["stock"]:
        raise ToolError(f"only {v['stock']} of '{title}' ({variant_label(v)}) left in stock"
                        + (f"; your cart already has {have}" if have else ""))
    if item:
        world.update("cart_items", vid, quantity=have + quantity, seen_cents=v["price_cents"])
    else:
        world.insert("cart_items", vid, {"user_id": USER, "quantity": quantity, "seen_cents": v["price_cents"]})
    return next(line for line in cart(cat, world) if line.variant_id == vid)


def remove_from_cart(cat: Catalog, world: World, ref: str, quantity: int | None = None) -> Line:
    """Remove a line (by variant id, or product id if only one of its variants is in the cart)."""
    lines = cart(cat, world)
    hit = [ln for ln in lines if ref in (ln.variant_id, ln.product_id)]
    if not hit:
        inside = ", ".join(ln.variant_id for ln in lines) or "nothing"
        raise ToolError(f"{ref!r} is not in your cart (cart holds: {inside})")
    if len(hit) > 1:
        raise ToolError(f"several variants of {ref} are in your cart ({', '.join(h.variant_id for h in hit)}); "
                        "give the variant id")
    ln = hit[0]
    if quantity is None or quantity >= ln.quantity:
        world.delete("cart_items", ln.variant_id)
    elif quantity < 1:
        raise ToolError(f"quantity must be at least 1, got {quantity}")
    else:
        world.update("cart_items", ln.variant_id, quantity=ln.quantity - quantity)
    return ln


def coupon_discount(world: World, code: str, lines: tuple[Line, ...]) -> int:
    """The discount ``code`` gives this cart; ToolError saying why when it does not apply."""
    c = world.get("coupons", code)
    if c is None:
        raise ToolError(f"coupon code {code!r} does not exist")
    if c["expires"] < TODAY:
        raise ToolError(f"coupon {code} expired on {c['expires']}")
    if not lines:
        raise ToolError("your cart is empty; add items before applying a coupon")
    cat = c.get("category")
    eligible = sum(ln.unit_cents * ln.quantity for ln in lines if cat is None or ln.category == cat)
    if cat is not None and not any(ln.category == cat for ln in lines):
        raise ToolError(f"coupon {code} applies only to {cat}; your cart has no {cat}")
    if eligible < c["min_spend_cents"]:
        where = f" on {cat}" if cat else ""
        raise ToolError(f"coupon {code} needs a minimum spend of {money(c['min_spend_cents'])}{where}; "
                        f"your cart has {money(eligible)}")
    if c["kind"] == "percent":
        return (eligible * c["value"] + 50) // 100
    return min(c["value"], eligible)


def quote(cat: Catalog, world: World) -> Quote:
    lines = cart(cat, world)
    sub = sum(ln.unit_cents * ln.quantity for ln in lines)
    code = session(world)["coupon"]
    disc = 0
    if code:
        try:
            disc = coupon_discount(world, code, lines)
        except ToolError:
            code, disc = None, 0
    return Quote(lines, sub, disc, code, sub - disc)


def session(world: World) -> Mapping[str, Any]:
    s = world.get("sessions", SESSION)
    assert s is not None
    return s


def apply_coupon(cat: Catalog, world: World, code: str) -> tuple[Quote, str | None]:
    """Apply ``code`` (replacing any other); returns the new quote and the replaced code."""
    code = code.strip().upper()
    coupon_discount(world, code, cart(cat, world))
    old = session(world)["coupon"]
    world.update("sessions", SESSION, coupon=code)
    return quote(cat, world), (old if old and old != code else None)


def checkout(cat: Catalog, world: World, address_id: str, payment_id: str, faults: Faults) -> str:
    """Place the order for the whole cart; returns the new order's key."""
    lines = cart(cat, world)
    if not lines:
        raise ToolError("your cart is empty; add items before checking out")
    addr = world.get("addresses", address_id)
    if addr is None or addr["user_id"] != USER:
        known = ", ".join(f"{k} ({a['label']})" for k, a in world.rows("addresses"))
        raise ToolError(f"unknown address id {address_id!r}; your addresses: {known}")
    pm = world.get("payment_methods", payment_id)
    if pm is None or pm["user_id"] != USER:
        known = ", ".join(f"{k} ({p['brand']} ending {p['last4']})" for k, p in world.rows("payment_methods"))
        raise ToolError(f"unknown payment method id {payment_id!r}; yours: {known}")
    if pm["expires"] < TODAY[:7]:
        raise ToolError(f"the {pm['brand']} ending {pm['last4']} expired in {pm['expires']}; "
                        "choose another payment method")
    faults.at_checkout(world, lines)
    lines = cart(cat, world)
    for ln in lines:
        if ln.stock < ln.quantity:
            if ln.stock <= 0:
                world.delete("cart_items", ln.variant_id)
                raise ToolError(f"{ln.describe()} sold out and was removed from your cart; nothing was "
                                "charged. Review your cart before checking out again")
            raise ToolError(f"only {ln.stock} of {ln.describe()} left; lower the quantity in your cart")
    changed = [ln for ln in lines if ln.unit_cents != ln.seen_cents]
    if changed:
        for ln in changed:
            world.update("cart_items", ln.variant_id, seen_cents=ln.unit_cents)
        what = "; ".join(f"{ln.describe()} now costs {money(ln.unit_cents)} (was {money(ln.seen_cents)})"
                         for ln in changed)
        raise ToolError(f"prices changed since you added them: {what}. Your cart was updated and nothing "
                        "was charged; review the cart and check out again to confirm")
    code = session(world)["coupon"]
    if code:
        try:
            coupon_discount(world, code, lines)
        except ToolError as e:
            world.update("sessions", SESSION, coupon=None)
            raise ToolError(f"coupon {code} no longer applies ({e}); it was removed from your cart") from None
    q = quote(cat, world)
    key = f"O-{1001 + world.count('orders')}"
    items = [{"variant_id": ln.variant_id, "product_id": ln.product_id, "title": ln.title,
              "size": ln.size, "colour": ln.colour, "quantity": ln.quantity, "unit_cents": ln.unit_cents}
             for ln in q.lines]
    world.insert("orders", key, {
        "user_id": USER, "status": "placed", "placed_on": TODAY, "items": items,
        "subtotal_cents": q.subtotal, "discount_cents": q.discount, "coupon": q.coupon,
        "total_cents": q.total, "address_id": address_id, "payment_id": payment_id,
    })
    for ln in q.lines:
        world.update("variants", ln.variant_id, stock=ln.stock - ln.quantity)
        world.delete("cart_items", ln.variant_id)
    world.update("sessions", SESSION, coupon=None)
    return key
