"""Plain-text views of products, carts, accounts and orders, shared by the tools and web modes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envfoundry import World

from .catalog import Catalog, money
from .search import Hit
from .store import Quote, variant_label


def stock_text(stock: int) -> str:
    if stock <= 0:
        return "out of stock"
    return f"only {stock} left" if stock <= 5 else "in stock"


def result_line(cat: Catalog, hit: Hit) -> str:
    p = cat.product(hit.product_id)
    return (f"{hit.product_id}  {p['title']} | from {money(hit.price_cents)} | {p['rating']} stars "
            f"({p['reviews']} reviews) | ships in {p['ship_days']} days | "
            f"{'in stock' if hit.in_stock else 'out of stock'}")


def product_header(p: Mapping[str, Any], pid: str) -> list[str]:
    comp = f" ({p['composition']})" if p["composition"] != p["material"] else ""
    return [
        f"{pid}  {p['title']}",
        f"brand: {p['brand']} | category: {p['category']} | type: {p['kind']} | material: {p['material']}{comp}",
        f"rating: {p['rating']} stars ({p['reviews']} reviews) | ships in {p['ship_days']} days",
        p["description"],
    ]


def variant_rows(world: World, p: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for vid in p["variant_ids"]:
        v = world.get("variants", vid)
        if v is not None:
            out.append((vid, v))
    return out


def variant_text(vid: str, v: Mapping[str, Any]) -> str:
    return f"{vid}  {variant_label(v)}  {money(v['price_cents'])}  {stock_text(v['stock'])}"


def product_text(cat: Catalog, world: World, pid: str) -> str:
    p = cat.product(pid)
    lines = product_header(p, pid)
    lines.append(f"variants ({p['size_label']}, colour, price, stock):")
    lines += ["  " + variant_text(vid, v) for vid, v in variant_rows(world, p)]
    return "\n".join(lines)


def cart_lines(q: Quote) -> list[str]:
    if not q.lines:
        return ["your cart is empty"]
    out = [f"{ln.variant_id}  {ln.describe()}  {ln.quantity} x {money(ln.unit_cents)} = "
           f"{money(ln.unit_cents * ln.quantity)}" for ln in q.lines]
    coupon = f" | coupon {q.coupon} -{money(q.discount)}" if q.coupon else " | no coupon"
    out.append(f"subtotal {money(q.subtotal)}{coupon} | total {money(q.total)}")
    return out


def address_line(key: str, a: Mapping[str, Any]) -> str:
    return f"{key}  {a['label']}: {a['recipient']}, {a['street']}, {a['postcode']} {a['city']}, {a['country']}"


def payment_line(key: str, p: Mapping[str, Any]) -> str:
    return f"{key}  {p['brand']} ending {p['last4']} ({p['nickname']}), expires {p['expires']}"


def order_text(cat: Catalog, world: World, key: str) -> str:
    o = world.get("orders", key)
    assert o is not None
    items = "; ".join(f"{it['quantity']} x '{it['title']}' ({variant_label(it)}) at {money(it['unit_cents'])}"
                      for it in o["items"])
    addr = world.get("addresses", o["address_id"])
    pm = world.get("payment_methods", o["payment_id"])
    where = addr["label"] if addr else o["address_id"]
    paid = f"{pm['brand']} ending {pm['last4']}" if pm else o["payment_id"]
    disc = f", discount -{money(o['discount_cents'])} ({o['coupon']})" if o["coupon"] else ""
    return (f"order {key} ({o['status']}, {o['placed_on']}): {items}; subtotal {money(o['subtotal_cents'])}"
            f"{disc}, total {money(o['total_cents'])}; ship to {where}; paid with {paid}")
