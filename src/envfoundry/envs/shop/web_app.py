"""The shop as a web application (Starlette on uvicorn): the same world, rules and faults as the tools mode.

One :class:`ShopWebApp` serves many episodes at once. Each episode is a :class:`Site` (its own forked
world and fault injector) reached through an unguessable session cookie, so two browser contexts never
see each other's cart. Every write goes through :mod:`.store`, as in the tools mode: the browser
chooses what to buy, the server computes what it costs.

The shop's faults (:mod:`.faults`) become web behaviour, drawn once per page request or form post
(the page a form post redirects to is not drawn again, nor are the sign-in pages):

- a transient fault is a gateway error page the agent sees: ``502 Bad Gateway``, ``503 Service
  Unavailable``, or, after a slow response (``slow_s`` seconds), ``504 Gateway Timeout``; nothing
  changed, and the page links to the same address to try again;
- a session expiry empties the cart and redirects to the sign-in page, which returns to the page
  asked for once the shopper signs in again (the password is in the task's prompt);
- a price rise or a sell-out at checkout sends the shopper back to the cart with the shop's message.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from envfoundry import ToolError, World

from . import store
from . import web_app_pages as pages
from .account import USER
from .catalog import money
from .faults import SESSION_EXPIRED
from .search import SORTS
from .tools import PAGE_SIZE, Shop
from .vocab import CATEGORIES, COLOURS

COOKIE = "shop_session"
PASSWORD = "threadline-2025"
MAX_BODY = 64 * 1024
MAX_FIELD = 200
_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_ERROR_TEXT = {502: "The shop did not answer the gateway. Nothing was changed; please try again.",
               503: "The shop is overloaded right now. Nothing was changed; please try again.",
               504: "The shop took too long to answer. Nothing was changed; please try again."}
#: checkout failures that change the cart: the shopper is sent back to it
_CART_ERRORS = ("sold out", "prices changed", "no longer applies", " left;")
Form = Mapping[str, str]
Handler = Callable[[Any, "Site", Form], Awaitable[Any]]


@dataclass
class Site:
    """One episode as the web application sees it: its world, its fault injector, its sign-in state."""

    world: World
    shop: Shop
    signed_in: bool = True
    flash: list[tuple[str, str]] = field(default_factory=list)
    after_post: bool = False  # the next GET follows a form post's redirect: no fault is drawn for it

    def cart_count(self) -> int:
        return sum(r["quantity"] for _, r in self.world.rows("cart_items"))


def _local(path: str) -> str:
    """``path`` when it is a path on this site, else ``/`` (no open redirects)."""
    path = path.strip()
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 for c in path):
        return "/"
    return path


class ShopWebApp:
    """The ASGI application (``.app``) and its table of sites (one per episode, by session token)."""

    def __init__(self, *, slow_s: float = 1.0) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.slow_s = slow_s
        self.sites: dict[str, Site] = {}
        r = self._route
        self.app = Starlette(routes=[
            Route("/", r(self.home, "home")),
            Route("/search", r(self.search, "search")),
            Route("/p/{pid}", r(self.product, "view_product")),
            Route("/cart", r(self.cart, "view_cart")),
            Route("/cart/add", r(self.cart_add, "add_to_cart"), methods=["POST"]),
            Route("/cart/remove", r(self.cart_remove, "remove_from_cart"), methods=["POST"]),
            Route("/cart/coupon", r(self.cart_coupon, "apply_coupon"), methods=["POST"]),
            Route("/checkout", r(self.checkout_page, "checkout_page")),
            Route("/checkout", r(self.checkout, "checkout"), methods=["POST"]),
            Route("/orders", r(self.orders, "view_orders")),
            Route("/orders/{key}", r(self.order, "view_order")),
            Route("/account", r(self.account, "account")),
            Route("/account/addresses/new", r(self.address_form, "address_form")),
            Route("/account/addresses", r(self.add_address, "add_address"), methods=["POST"]),
            Route("/account/cards/new", r(self.card_form, "card_form")),
            Route("/account/cards", r(self.add_card, "add_card"), methods=["POST"]),
            Route("/login", r(self.login_page, "login", gate=False)),
            Route("/login", r(self.login, "login", gate=False), methods=["POST"]),
            Route("/logout", r(self.logout, "logout", gate=False), methods=["POST"]),
            Route("/favicon.ico", self._favicon),
        ], exception_handlers={404: self._missing, 405: self._missing})

    # ------------------------------------------------------------------ sites
    def open(self, site: Site) -> str:
        """Serve ``site``; returns the session token its browser context sends as cookie ``COOKIE``."""
        token = secrets.token_urlsafe(24)
        self.sites[token] = site
        return token

    def close(self, token: str) -> None:
        self.sites.pop(token, None)

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _html(text: str, status: int = 200) -> Any:
        from starlette.responses import HTMLResponse

        return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})

    @staticmethod
    def _redirect(url: str) -> Any:
        from starlette.responses import RedirectResponse

        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    async def _favicon(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(status_code=204)

    async def _missing(self, request: Any, exc: Any) -> Any:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return self._html(pages.bare("Method not allowed", "<p>This address only answers the shop's own forms."
                                         "</p><p><a href=\"/\">Go to the shop's home page</a></p>"), 405)
        return self._html(pages.not_found(request.url.path), 404)

    @staticmethod
    async def _form(request: Any) -> dict[str, str] | None:
        body = await request.body()
        if len(body) > MAX_BODY:
            return None
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    @staticmethod
    def _here(request: Any, form: Form) -> str:
        """Where the shopper was: this address for a page, the page that sent the form for a post."""
        if request.method == "GET":
            q = request.url.query
            return request.url.path + (f"?{q}" if q else "")
        ref = urlsplit(request.headers.get("referer", ""))
        return _local(ref.path + (f"?{ref.query}" if ref.query else "")) if ref.path else "/"

    def _route(self, fn: Handler, op: str, *, gate: bool = True) -> Callable[[Any], Awaitable[Any]]:
        async def endpoint(request: Any) -> Any:
            site = self.sites.get(request.cookies.get(COOKIE, ""))
            if site is None:
                return self._html(pages.bare("No shop session", "<p>This browser has no session with the shop.</p>"),
                                  403)
            post = request.method == "POST"
            form: dict[str, str] = {}
            if post:
                got = await self._form(request)
                if got is None:
                    return self._html(pages.bare("Request too large", "<p>The form was too large.</p>"), 413)
                form = got
            exempt = site.after_post and not post
            site.after_post = False
            if gate:
                if not site.signed_in:
                    return self._redirect("/login?" + urlencode({"next": self._here(request, form)}))
                if not exempt:
                    failed = await self._fault(request, site, op, form)
                    if failed is not None:
                        return failed
            resp = await fn(request, site, form)
            if post and resp.status_code == 303:
                site.after_post = True
            return resp

        return endpoint

    async def _fault(self, request: Any, site: Site, op: str, form: Form) -> Any:
        try:
            site.shop.faults.on_call(site.world, op)
        except ToolError as e:
            text = str(e)
            here = self._here(request, form)
            if text == SESSION_EXPIRED:
                site.signed_in = False
                site.flash.append(("notice", "Your session expired and your cart was emptied. Please sign in again."))
                return self._redirect("/login?" + urlencode({"next": here}))
            code = int(text[:3]) if text[:3] in ("502", "503") else 504
            if code == 504:
                await asyncio.sleep(self.slow_s)
            return self._html(pages.error_page(code, _REASONS[code], _ERROR_TEXT[code], here), code)
        return None

    def _page(self, site: Site, title: str, body: str, *, query: str = "", status: int = 200) -> Any:
        flash, site.flash = site.flash, []
        return self._html(pages.layout(title, body, cart_count=site.cart_count(), flash=flash, query=query), status)

    def _back(self, site: Site, url: str, kind: str, text: str) -> Any:
        site.flash.append((kind, text))
        return self._redirect(url)

    # ------------------------------------------------------------------ pages
    async def home(self, request: Any, site: Site, form: Form) -> Any:
        user = site.world.get("users", USER)
        return self._page(site, "Welcome", pages.home(user["name"] if user else "shopper", CATEGORIES))

    async def search(self, request: Any, site: Site, form: Form) -> Any:
        raw = {k: str(v)[:MAX_FIELD] for k, v in request.query_params.items()}
        p: dict[str, str] = {k: raw.get(k, "").strip() for k in (
            "q", "category", "brand", "material", "size", "colour", "min_rating", "max_price", "in_stock", "sort")}
        problems = []
        if p["category"] and p["category"] not in CATEGORIES:
            problems.append(f"there is no category {p['category']!r}")
            p["category"] = ""
        if p["sort"] not in SORTS:
            if p["sort"]:
                problems.append(f"cannot sort by {p['sort']!r}")
            p["sort"] = "relevance"
        rating = price = None
        try:
            rating = float(p["min_rating"]) if p["min_rating"] else None
        except ValueError:
            problems.append(f"the minimum rating must be a number, got {p['min_rating']!r}")
            p["min_rating"] = ""
        try:
            price = int(round(float(p["max_price"].lstrip("$").replace(",", "")) * 100)) if p["max_price"] else None
        except ValueError:
            problems.append(f"the maximum price must be an amount in dollars, got {p['max_price']!r}")
            p["max_price"] = ""
        page = int(raw["page"]) if raw.get("page", "").isdigit() and int(raw["page"]) > 0 else 1
        s, w = site.shop, site.world

        def run(no: int) -> tuple[int, list[Any]]:
            return s.cat.index.search(
                w, s.dirty(w), p["q"], category=p["category"] or None, brand=p["brand"] or None,
                material=p["material"] or None, min_rating=rating, max_price_cents=price, size=p["size"] or None,
                colour=p["colour"] or None, in_stock=bool(p["in_stock"]), sort=p["sort"],
                offset=(no - 1) * PAGE_SIZE, limit=PAGE_SIZE)

        n, hits = run(page)
        pages_n = max(1, -(-n // PAGE_SIZE))
        if page > pages_n:
            page = pages_n
            n, hits = run(page)
        if problems:
            site.flash.append(("error", "Some filters were ignored: " + "; ".join(problems)))
        body = pages.search(s.cat, {**p, "page": str(page)}, CATEGORIES, COLOURS, n, hits, page, pages_n)
        return self._page(site, "Search results", body, query=p["q"])

    async def product(self, request: Any, site: Site, form: Form) -> Any:
        pid = request.path_params["pid"]
        p = site.world.get("products", pid)
        if p is None:
            return self._page(site, "Product not found", f"<p>There is no product {pages.esc(pid)}.</p>", status=404)
        return self._page(site, p["title"], pages.product(site.world, pid, p))

    async def cart(self, request: Any, site: Site, form: Form) -> Any:
        return self._page(site, "Your cart", pages.cart(store.quote(site.shop.cat, site.world)))

    async def cart_add(self, request: Any, site: Site, form: Form) -> Any:
        s, w = site.shop, site.world
        pid = form.get("product_id", "").strip()
        p = w.get("products", pid)
        if p is None:
            return self._back(site, "/", "error", f"There is no product {pid!r}.")
        size, colour, qty = form.get("size", ""), form.get("colour", ""), form.get("quantity", "1").strip()
        here = f"/p/{pid}"
        sizes, colours = pages.variant_options(w, p)
        missing = [what for what, got, values in ((p["size_label"], size, sizes), ("colour", colour, colours))
                   if not got.strip() and len(values) > 1]
        if missing:
            return self._back(site, here, "error", f"Choose a {' and a '.join(missing)} first.")
        if not qty.isdigit() or not 1 <= int(qty) <= 999:
            return self._back(site, here, "error", f"The quantity must be a whole number from 1, got {qty!r}.")
        try:
            vid = store.resolve_variant(s.cat, w, pid, size, colour)
            ln = store.add_to_cart(s.cat, w, vid, int(qty))
        except ToolError as e:
            return self._back(site, here, "error", f"Could not add to cart: {e}.")
        return self._back(site, "/cart", "notice", f"Added {qty} × {ln.describe()} to your cart.")

    async def cart_remove(self, request: Any, site: Site, form: Form) -> Any:
        try:
            ln = store.remove_from_cart(site.shop.cat, site.world, form.get("variant_id", "").strip())
        except ToolError as e:
            return self._back(site, "/cart", "error", f"{e}.")
        return self._back(site, "/cart", "notice", f"Removed {ln.describe()}.")

    async def cart_coupon(self, request: Any, site: Site, form: Form) -> Any:
        code = form.get("code", "")
        if not code.strip():
            return self._back(site, "/cart", "error", "Enter a coupon code first.")
        try:
            q, replaced = store.apply_coupon(site.shop.cat, site.world, code[:MAX_FIELD])
        except ToolError as e:
            return self._back(site, "/cart", "error", f"{e}.")
        note = f" It replaces {replaced}." if replaced else ""
        return self._back(site, "/cart", "notice", f"Coupon {q.coupon} applied: -{money(q.discount)}.{note}")

    async def checkout_page(self, request: Any, site: Site, form: Form) -> Any:
        q = store.quote(site.shop.cat, site.world)
        if not q.lines:
            return self._back(site, "/cart", "error", "Your cart is empty; add items before checking out.")
        user = site.world.get("users", USER) or {}
        body = pages.checkout(site.world, q, str(user.get("default_address_id", "")),
                              str(user.get("default_payment_id", "")))
        return self._page(site, "Checkout", body)

    async def checkout(self, request: Any, site: Site, form: Form) -> Any:
        address, payment = form.get("address_id", "").strip(), form.get("payment_id", "").strip()
        if not address or not payment:
            return self._back(site, "/checkout", "error", "Choose a shipping address and a payment method.")
        try:
            key = store.checkout(site.shop.cat, site.world, address, payment, site.shop.faults)
        except ToolError as e:
            to = "/cart" if any(x in str(e) for x in _CART_ERRORS) else "/checkout"
            return self._back(site, to, "error", f"Your order was not placed: {e}")
        return self._back(site, f"/orders/{key}", "notice", f"Thank you! Your order {key} was placed.")

    async def orders(self, request: Any, site: Site, form: Form) -> Any:
        return self._page(site, "Your orders", pages.orders(site.world))

    async def order(self, request: Any, site: Site, form: Form) -> Any:
        key = request.path_params["key"]
        o = site.world.get("orders", key)
        if o is None or o["user_id"] != USER:
            return self._page(site, "Order not found", f"<p>You have no order {pages.esc(key)}.</p>", status=404)
        return self._page(site, f"Order {key}", pages.order(site.world, key))

    async def account(self, request: Any, site: Site, form: Form) -> Any:
        user = site.world.get("users", USER)
        assert user is not None
        return self._page(site, "Your account", pages.account(site.world, user))

    def _entry(self, request: Any, site: Site, title: str, action: str, fields: Any, button: str,
               values: Mapping[str, str]) -> Any:
        nxt = _local(request.query_params.get("next", "/account"))
        return self._page(site, title, pages.entry_form(action, fields, button, nxt, values))

    async def address_form(self, request: Any, site: Site, form: Form) -> Any:
        user = site.world.get("users", USER) or {}
        return self._entry(request, site, "Add a new address", "/account/addresses", pages.ADDRESS_FIELDS,
                           "Save address", {"recipient": str(user.get("name", ""))})

    async def card_form(self, request: Any, site: Site, form: Form) -> Any:
        return self._entry(request, site, "Add a card", "/account/cards", pages.CARD_FIELDS, "Save card", {})

    async def add_address(self, request: Any, site: Site, form: Form) -> Any:
        nxt = _local(form.get("next", "/account"))
        rec = {k: form.get(k, "").strip() for k, _ in pages.ADDRESS_FIELDS}
        empty = [label for k, label in pages.ADDRESS_FIELDS if not rec[k]]
        back = "/account/addresses/new?" + urlencode({"next": nxt})
        if empty:
            return self._back(site, back, "error", f"Fill in every field (missing: {', '.join(empty)}).")
        if any(len(v) > MAX_FIELD for v in rec.values()):
            return self._back(site, back, "error", f"Each field takes at most {MAX_FIELD} characters.")
        w = site.world
        key = f"a{w.count('addresses') + 1}"
        while w.get("addresses", key) is not None:
            key += "x"
        w.insert("addresses", key, {"user_id": USER, **rec})
        return self._back(site, nxt, "notice", f"Address saved: {pages.address_text(rec)}.")

    async def add_card(self, request: Any, site: Site, form: Form) -> Any:
        nxt = _local(form.get("next", "/account"))
        number = "".join(form.get("number", "").split())
        expires, nickname = form.get("expires", "").strip(), form.get("nickname", "").strip()[:MAX_FIELD]
        back = "/account/cards/new?" + urlencode({"next": nxt})
        if not number.isdigit() or not 12 <= len(number) <= 19:
            return self._back(site, back, "error", "The card number must be 12 to 19 digits.")
        if len(expires) != 7 or expires[4] != "-" or not (expires[:4] + expires[5:]).isdigit() \
                or not 1 <= int(expires[5:]) <= 12:
            return self._back(site, back, "error", f"The expiry must look like 2027-03, got {expires!r}.")
        brand = {"4": "Visa", "5": "Mastercard", "3": "Amex"}.get(number[0], "Card")
        w = site.world
        key = f"pm{w.count('payment_methods') + 1}"
        while w.get("payment_methods", key) is not None:
            key += "x"
        rec = {"user_id": USER, "brand": brand, "last4": number[-4:], "nickname": nickname or "new",
               "expires": expires}
        w.insert("payment_methods", key, rec)
        return self._back(site, nxt, "notice", f"Card saved: {pages.card_text(rec)}.")

    async def login_page(self, request: Any, site: Site, form: Form) -> Any:
        nxt = _local(request.query_params.get("next", "/"))
        if site.signed_in:
            return self._redirect(nxt)
        user = site.world.get("users", USER) or {}
        flash, site.flash = site.flash, []
        return self._html(pages.login(str(user.get("email", "")), nxt, flash))

    async def login(self, request: Any, site: Site, form: Form) -> Any:
        nxt = _local(form.get("next", "/"))
        user = site.world.get("users", USER) or {}
        if form.get("email", "").strip().lower() != str(user.get("email", "")).lower() \
                or form.get("password", "") != PASSWORD:
            return self._back(site, "/login?" + urlencode({"next": nxt}), "error", "Wrong email or password.")
        site.signed_in = True
        return self._back(site, nxt, "notice", "You are signed in.")

    async def logout(self, request: Any, site: Site, form: Form) -> Any:
        site.signed_in = False
        return self._back(site, "/login", "notice", "You signed out.")
