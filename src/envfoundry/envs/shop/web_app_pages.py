"""The shop web application's HTML: server-rendered pages with real forms and links, every value escaped.

Pages carry no script: every action is a link (GET) or a form (POST answered by a 303 redirect), so
the page an agent sees is the server's answer, a browser's history works, and a page reads the same
in any browser. Forms are ``novalidate``: the server checks every value and says what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from envfoundry import World

from . import store
from .catalog import Catalog, money
from .render import stock_text
from .search import Hit

SHOP_NAME = "Threadline"
SORT_LABELS = {"relevance": "Relevance", "price_asc": "Price: low to high", "price_desc": "Price: high to low",
               "rating": "Rating", "reviews": "Most reviews"}
RATINGS = ("3", "3.5", "4", "4.5")
_CSS = ("body{font-family:sans-serif;max-width:60rem;margin:0 auto;padding:0 1rem}header{display:flex;gap:1rem;"
        "align-items:center;border-bottom:1px solid #ccc;padding:.5rem 0}.alert{padding:.5rem;margin:.5rem 0;"
        "border:1px solid #c00;background:#fee}.notice{padding:.5rem;margin:.5rem 0;border:1px solid #080;"
        "background:#efe}form.inline{display:inline}label{display:block;margin:.25rem 0}")


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def _head(title: str) -> str:
    # the icon link keeps the browser from asking for /favicon.ico (one request per action, no more)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)} · {SHOP_NAME}"
            f"</title><link rel=\"icon\" href=\"data:,\"><style>{_CSS}</style></head>")


def _flash(flash: Iterable[tuple[str, str]]) -> str:
    out = []
    for kind, text in flash:
        role = "alert" if kind == "error" else "status"
        out.append(f"<div role=\"{role}\" class=\"{'alert' if kind == 'error' else 'notice'}\">{esc(text)}</div>")
    return "".join(out)


def layout(title: str, body: str, *, cart_count: int, flash: Sequence[tuple[str, str]], query: str = "") -> str:
    """A page of the signed-in shop: header (home, search, cart, orders, account, sign out), messages, body."""
    header = (
        f"<header><a href=\"/\">{SHOP_NAME} home</a>"
        "<form role=\"search\" action=\"/search\" method=\"get\" novalidate>"
        f"<input type=\"search\" name=\"q\" value=\"{esc(query)}\" aria-label=\"Search products\">"
        "<button type=\"submit\">Search</button></form>"
        f"<nav aria-label=\"Account\"><a href=\"/cart\">Cart ({cart_count})</a> <a href=\"/orders\">Your orders</a> "
        "<a href=\"/account\">Your account</a> <form class=\"inline\" method=\"post\" action=\"/logout\">"
        "<button type=\"submit\">Sign out</button></form></nav></header>")
    return f"{_head(title)}<body>{header}<main>{_flash(flash)}<h1>{esc(title)}</h1>{body}</main></body></html>"


def bare(title: str, body: str, *, flash: Sequence[tuple[str, str]] = ()) -> str:
    """A page outside the signed-in shop (sign-in, errors): no header."""
    return f"{_head(title)}<body><main>{_flash(flash)}<h1>{esc(title)}</h1>{body}</main></body></html>"


def error_page(status: int, reason: str, text: str, retry: str) -> str:
    """What a gateway in front of the shop answers when the shop fails (502, 503, 504)."""
    return bare(f"{status} {reason}", f"<p>{esc(text)}</p><p><a href=\"{esc(retry)}\">Try again</a></p>"
                "<hr><p>gateway</p>")


def not_found(path: str) -> str:
    return bare("Page not found", f"<p>There is no page at {esc(path)}.</p><p><a href=\"/\">Go to the shop's home "
                "page</a></p>")


# ------------------------------------------------------------------ pages
def home(name: str, categories: Sequence[str]) -> str:
    links = "".join(f"<li><a href=\"/search?{urlencode({'category': c})}\">{esc(c.capitalize())}</a></li>"
                    for c in categories)
    return (f"<p>Welcome back, {esc(name)}. Search the catalog or browse a category.</p>"
            f"<nav aria-label=\"Categories\"><ul>{links}</ul></nav>")


def _select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str) -> str:
    opts = "".join(f"<option value=\"{esc(v)}\"{' selected' if v == chosen else ''}>{esc(text)}</option>"
                   for v, text in options)
    return f"<label>{esc(label)} <select name=\"{name}\">{opts}</select></label>"


def _text(name: str, label: str, value: str, *, kind: str = "text", extra: str = "") -> str:
    return (f"<label>{esc(label)} <input type=\"{kind}\" name=\"{name}\" value=\"{esc(value)}\"{extra}></label>")


def search(cat: Catalog, params: Mapping[str, str], categories: Sequence[str], colours: Sequence[str],
           n: int, hits: Sequence[Hit], page: int, pages: int) -> str:
    p = params
    form = (
        "<form action=\"/search\" method=\"get\" novalidate aria-label=\"Filters\">"
        + _text("q", "Keywords", p.get("q", ""), kind="search")
        + _select("category", "Category", [("", "All categories"), *[(c, c.capitalize()) for c in categories]],
                  p.get("category", ""))
        + _text("brand", "Brand", p.get("brand", ""))
        + _text("material", "Material", p.get("material", ""))
        + _text("size", "Size", p.get("size", ""))
        + _select("colour", "Colour", [("", "Any colour"), *[(c, c) for c in colours]], p.get("colour", ""))
        + _select("min_rating", "Minimum rating", [("", "Any rating"), *[(r, f"{r} stars and up") for r in RATINGS]],
                  p.get("min_rating", ""))
        + _text("max_price", "Maximum price ($)", p.get("max_price", ""), extra=" inputmode=\"decimal\"")
        + "<label><input type=\"checkbox\" name=\"in_stock\" value=\"1\""
        + (" checked" if p.get("in_stock") else "") + "> In stock only</label>"
        + _select("sort", "Sort by", list(SORT_LABELS.items()), p.get("sort", "relevance"))
        + "<button type=\"submit\">Apply filters</button></form>")
    what = f"“{esc(p['q'])}”" if p.get("q") else "all products"
    items = []
    for h in hits:
        prod = cat.product(h.product_id)
        items.append(
            f"<li><a href=\"/p/{esc(h.product_id)}\">{esc(prod['title'])}</a> <span>Item {esc(h.product_id)} · "
            f"from {money(h.price_cents)} · {prod['rating']} stars ({prod['reviews']} reviews) · ships in "
            f"{prod['ship_days']} days · {'in stock' if h.in_stock else 'out of stock'}</span></li>")
    listing = f"<ol aria-label=\"Results\">{''.join(items)}</ol>" if items else "<p>No products match. Try fewer " \
        "words or filters.</p>"
    nav = []
    base = {k: v for k, v in p.items() if v and k != "page"}
    if page > 1:
        nav.append(f"<a href=\"/search?{esc(urlencode({**base, 'page': page - 1}))}\">Previous page</a>")
    if page < pages:
        nav.append(f"<a href=\"/search?{esc(urlencode({**base, 'page': page + 1}))}\">Next page</a>")
    pager = f"<nav aria-label=\"Pages\">{' '.join(nav)}</nav>" if nav else ""
    return (f"{form}<p>{n} results for {what}, sorted by {esc(SORT_LABELS[p.get('sort') or 'relevance'])}, "
            f"page {page} of {pages}</p>{listing}{pager}")


def variant_options(world: World, p: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    sizes: list[str] = []
    colours: list[str] = []
    for vid in p["variant_ids"]:
        v = world.get("variants", vid)
        if v is not None:
            sizes += [v["size"]] if v["size"] not in sizes else []
            colours += [v["colour"]] if v["colour"] not in colours else []
    return sizes, colours


def product(world: World, pid: str, p: Mapping[str, Any]) -> str:
    comp = f" ({esc(p['composition'])})" if p["composition"] != p["material"] else ""
    label = str(p["size_label"]).capitalize()
    rows = []
    for vid in p["variant_ids"]:
        v = world.get("variants", vid)
        if v is not None:
            rows.append(f"<li>{esc(store.variant_label(v) or v['size'])}: {money(v['price_cents'])}, "
                        f"{esc(stock_text(v['stock']))}</li>")
    sizes, colours = variant_options(world, p)

    def choice(name: str, what: str, values: list[str]) -> str:
        opts = [] if len(values) == 1 else [("", f"Choose a {what.lower()}")]
        return _select(name, what, [*opts, *[(x, x) for x in values]], values[0] if len(values) == 1 else "")

    form = ("<form method=\"post\" action=\"/cart/add\" novalidate aria-label=\"Add to cart\">"
            f"<input type=\"hidden\" name=\"product_id\" value=\"{esc(pid)}\">"
            + choice("size", label, sizes) + choice("colour", "Colour", colours)
            + _text("quantity", "Quantity", "1", extra=" inputmode=\"numeric\"")
            + "<button type=\"submit\">Add to cart</button></form>")
    return (f"<p>Item {esc(pid)} · brand: {esc(p['brand'])} · category: {esc(p['category'])} · type: "
            f"{esc(p['kind'])}</p><p>Material: {esc(p['material'])}{comp}</p>"
            f"<p>Rating: {p['rating']} stars ({p['reviews']} reviews) · ships in {p['ship_days']} days</p>"
            f"<p>{esc(p['description'])}</p><h2>Options ({esc(p['size_label'])}, colour, price, stock)</h2>"
            f"<ul aria-label=\"Variants\">{''.join(rows)}</ul>{form}")


def _summary(q: store.Quote) -> str:
    coupon = (f"<p>Coupon {esc(q.coupon)}: -{money(q.discount)}</p>" if q.coupon else "<p>No coupon applied</p>")
    return f"<p>Subtotal: {money(q.subtotal)}</p>{coupon}<p><strong>Total: {money(q.total)}</strong></p>"


def cart(q: store.Quote) -> str:
    if not q.lines:
        return "<p>Your cart is empty.</p><p><a href=\"/\">Continue shopping</a></p>"
    items = []
    for ln in q.lines:
        items.append(
            f"<li><a href=\"/p/{esc(ln.product_id)}\">{esc(ln.title)}</a> ({esc(_opts(ln))})"
            f" · {ln.quantity} × {money(ln.unit_cents)} = {money(ln.unit_cents * ln.quantity)} "
            "<form class=\"inline\" method=\"post\" action=\"/cart/remove\">"
            f"<input type=\"hidden\" name=\"variant_id\" value=\"{esc(ln.variant_id)}\">"
            f"<button type=\"submit\" aria-label=\"Remove {esc(ln.describe())}\">Remove</button></form></li>")
    coupon = ("<form method=\"post\" action=\"/cart/coupon\" novalidate aria-label=\"Coupon\">"
              + _text("code", "Coupon code", "") + "<button type=\"submit\">Apply coupon</button></form>")
    return (f"<ul aria-label=\"Cart items\">{''.join(items)}</ul>{_summary(q)}{coupon}"
            "<p><a href=\"/checkout\">Proceed to checkout</a></p>")


def _opts(ln: store.Line) -> str:
    return ", ".join(x for x in (ln.size if ln.size != "one size" else "", ln.colour) if x) or ln.size


def address_text(a: Mapping[str, Any]) -> str:
    return f"{a['label']}: {a['recipient']}, {a['street']}, {a['postcode']} {a['city']}, {a['country']}"


def card_text(p: Mapping[str, Any]) -> str:
    return f"{p['brand']} ending {p['last4']} ({p['nickname']}), expires {p['expires']}"


def checkout(world: World, q: store.Quote, address: str, payment: str) -> str:
    def radios(name: str, rows: Iterable[tuple[str, str]], chosen: str) -> str:
        return "".join(f"<label><input type=\"radio\" name=\"{name}\" value=\"{esc(k)}\""
                       f"{' checked' if k == chosen else ''}> {esc(text)}</label>" for k, text in rows)

    lines = "".join(f"<li>{esc(ln.title)} ({esc(_opts(ln))}) · {ln.quantity} × {money(ln.unit_cents)}</li>"
                    for ln in q.lines)
    return ("<form method=\"post\" action=\"/checkout\" novalidate aria-label=\"Checkout\">"
            "<fieldset><legend>Ship to</legend>"
            + radios("address_id", ((k, address_text(a)) for k, a in world.rows("addresses")), address)
            + "</fieldset><fieldset><legend>Pay with</legend>"
            + radios("payment_id", ((k, card_text(p)) for k, p in world.rows("payment_methods")), payment)
            + f"</fieldset><section aria-label=\"Order summary\"><ul>{lines}</ul>{_summary(q)}</section>"
            "<button type=\"submit\">Place order</button></form>"
            "<p><a href=\"/account/addresses/new?next=/checkout\">Add a new address</a> "
            "<a href=\"/account/cards/new?next=/checkout\">Add a card</a> <a href=\"/cart\">Back to cart</a></p>")


def order(world: World, key: str) -> str:
    o = world.get("orders", key)
    assert o is not None
    items = "".join(f"<li>{it['quantity']} × {esc(it['title'])} ({esc(store.variant_label(it) or it['size'])}) at "
                    f"{money(it['unit_cents'])}</li>" for it in o["items"])
    addr = world.get("addresses", o["address_id"])
    pm = world.get("payment_methods", o["payment_id"])
    disc = f"<p>Discount ({esc(o['coupon'])}): -{money(o['discount_cents'])}</p>" if o["coupon"] else ""
    return (f"<p>Status: {esc(o['status'])} · placed on {esc(o['placed_on'])}</p><ul aria-label=\"Items\">{items}"
            f"</ul><p>Subtotal: {money(o['subtotal_cents'])}</p>{disc}<p><strong>Total: "
            f"{money(o['total_cents'])}</strong></p><p>Ship to: {esc(address_text(addr) if addr else o['address_id'])}"
            f"</p><p>Paid with: {esc(card_text(pm) if pm else o['payment_id'])}</p>"
            "<p><a href=\"/orders\">All your orders</a> <a href=\"/\">Continue shopping</a></p>")


def orders(world: World) -> str:
    rows = []
    for key in sorted(world.keys("orders"), reverse=True):
        o = world.get("orders", key)
        assert o is not None
        n = sum(it["quantity"] for it in o["items"])
        rows.append(f"<li><a href=\"/orders/{esc(key)}\">Order {esc(key)}</a> · {esc(o['placed_on'])} · "
                    f"{esc(o['status'])} · {n} item{'s' if n != 1 else ''} · {money(o['total_cents'])}</li>")
    return f"<ul aria-label=\"Orders\">{''.join(rows)}</ul>" if rows else "<p>You have no orders yet.</p>"


def account(world: World, user: Mapping[str, Any]) -> str:
    addrs = "".join(f"<li>{esc(address_text(a))}</li>" for _, a in world.rows("addresses"))
    cards = "".join(f"<li>{esc(card_text(p))}</li>" for _, p in world.rows("payment_methods"))
    return (f"<p>{esc(user['name'])} · {esc(user['email'])} · member since {esc(user['member_since'])}</p>"
            f"<h2>Addresses</h2><ul aria-label=\"Addresses\">{addrs}</ul>"
            "<p><a href=\"/account/addresses/new\">Add a new address</a></p>"
            f"<h2>Cards</h2><ul aria-label=\"Cards\">{cards}</ul><p><a href=\"/account/cards/new\">Add a card</a></p>")


ADDRESS_FIELDS = (("label", "Label (e.g. Home)"), ("recipient", "Recipient"), ("street", "Street"),
                  ("city", "City"), ("postcode", "Postcode"), ("country", "Country"))
CARD_FIELDS = (("number", "Card number"), ("expires", "Expiry (YYYY-MM)"), ("nickname", "Nickname"))


def entry_form(action: str, fields: Sequence[tuple[str, str]], button: str, nxt: str,
               values: Mapping[str, str]) -> str:
    inputs = "".join(_text(name, label, values.get(name, "")) for name, label in fields)
    return (f"<form method=\"post\" action=\"{esc(action)}\" novalidate aria-label=\"{esc(button)}\">"
            f"<input type=\"hidden\" name=\"next\" value=\"{esc(nxt)}\">{inputs}"
            f"<button type=\"submit\">{esc(button)}</button></form><p><a href=\"{esc(nxt)}\">Cancel</a></p>")


def login(email: str, nxt: str, flash: Sequence[tuple[str, str]]) -> str:
    body = ("<p>Sign in to continue shopping.</p>"
            "<form method=\"post\" action=\"/login\" novalidate aria-label=\"Sign in\">"
            f"<input type=\"hidden\" name=\"next\" value=\"{esc(nxt)}\">"
            + _text("email", "Email", email, kind="email") + _text("password", "Password", "", kind="password")
            + "<button type=\"submit\">Sign in</button></form>")
    return bare("Sign in", body, flash=flash)
