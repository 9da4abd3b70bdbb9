"""The shopper's account and a task's initial world: a fork of the cached catalog plus a few records.

A task's ``world`` field holds only small parameters (catalog seed and size, account seed, the
coupons the shopper holds, per-task stock overrides, the fault rate); :func:`task_world` turns them
into a World: the catalog fork, the user, addresses, payment methods, past orders, coupons, an
empty cart and a signed-in session.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from typing import Any

from envfoundry import Task, World, derive_seed

from .catalog import get_catalog

TODAY = "2025-06-14"  # the shop's calendar: coupons and cards expire relative to this day
USER = "u1"
SESSION = "s1"

_NAMES = ("Alex Morgan", "Sam Rivera", "Jordan Lee", "Robin Okafor", "Kim Andersen", "Noor Haddad",
          "Taylor Novak", "Maya Lindqvist", "Chris Adeyemi", "Elena Petrova")
_STREETS = ("Elm Street", "Harbour Road", "Birch Lane", "Market Square", "Mill Road", "Station Road",
            "Church Lane", "Park Avenue", "Quay Street", "Orchard Way", "King's Road", "Hill Street")
_CITIES = (("Oslo", "0150", "Norway"), ("Bergen", "5003", "Norway"), ("Leeds", "LS1 4AP", "UK"),
           ("Bristol", "BS1 5TR", "UK"), ("Lyon", "69002", "France"), ("Utrecht", "3511 AB", "Netherlands"),
           ("Graz", "8010", "Austria"), ("Aarhus", "8000", "Denmark"))
#: address labels a task may ask for, and the phrase the shopper uses
ADDRESS_PHRASES = {"Home": "my home address", "Office": "my office", "Mom's place": "my mom's place",
                   "Cabin": "the cabin", "Studio": "my studio"}
_CARDS = (("Visa", "4242"), ("Mastercard", "5454"), ("Amex", "1005"), ("Visa", "1881"), ("Mastercard", "3310"))


def account_tables(account_seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """The user's records, a pure function of ``account_seed`` (shared by tasks and worlds)."""
    return _account(account_seed)


@functools.lru_cache(maxsize=4096)
def _account(account_seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    rng = random.Random(derive_seed("shop-account", account_seed))
    name = rng.choice(_NAMES)
    extras = rng.sample(("Old office", "Mom's place", "Cabin", "Studio"), rng.randint(1, 2))
    labels = ["Home", "Office", *extras]
    rng.shuffle(labels)
    addresses = {}
    for i, label in enumerate(labels, 1):
        city, postcode, country = rng.choice(_CITIES)
        addresses[f"a{i}"] = {"user_id": USER, "label": label, "recipient": name,
                              "street": f"{rng.randint(1, 180)} {rng.choice(_STREETS)}",
                              "city": city, "postcode": postcode, "country": country}
    cards = rng.sample(_CARDS, 3)
    nicknames = rng.sample(("personal", "work", "travel"), 3)
    expired = rng.randrange(3)
    payments = {}
    for i, ((brand, last4), nick) in enumerate(zip(cards, nicknames, strict=True), 1):
        exp = f"20{rng.randint(23, 24)}-{rng.randint(1, 12):02d}" if i - 1 == expired else \
            f"20{rng.randint(26, 30)}-{rng.randint(1, 12):02d}"
        payments[f"pm{i}"] = {"user_id": USER, "brand": brand, "last4": last4, "nickname": nick,
                              "expires": exp}
    home = next(k for k, a in addresses.items() if a["label"] == "Home")
    default_pm = next(k for k, p in payments.items() if p["expires"] >= TODAY[:7])
    user = {"name": name, "email": name.lower().replace(" ", ".") + "@example.org",
            "default_address_id": home, "default_payment_id": default_pm, "member_since": "2019-03-02"}
    return {"users": {USER: user}, "addresses": addresses, "payment_methods": payments}


def past_orders(account_seed: int, catalog_seed: int, catalog_size: int) -> dict[str, dict[str, Any]]:
    """One to three delivered orders of catalog items, so new orders are not the only ones."""
    cat = get_catalog(catalog_seed, catalog_size)
    rng = random.Random(derive_seed("shop-history", account_seed))
    acc = account_tables(account_seed)
    out = {}
    for i in range(rng.randint(1, 3)):
        pid = f"P{rng.randint(1, catalog_size):0{max(5, len(str(catalog_size)))}d}"
        p = cat.product(pid)
        vid = rng.choice(p["variant_ids"])
        v = cat.variant(vid)
        qty = rng.randint(1, 2)
        total = v["price_cents"] * qty
        out[f"O-{1001 + i}"] = {
            "user_id": USER, "status": "delivered", "placed_on": f"2025-0{rng.randint(1, 5)}-{rng.randint(10, 28)}",
            "items": [{"variant_id": vid, "product_id": pid, "title": p["title"], "size": v["size"],
                       "colour": v["colour"], "quantity": qty, "unit_cents": v["price_cents"]}],
            "subtotal_cents": total, "discount_cents": 0, "coupon": None, "total_cents": total,
            "address_id": acc["users"][USER]["default_address_id"],
            "payment_id": acc["users"][USER]["default_payment_id"],
        }
    return out


def task_world(task: Task) -> World:
    """The initial world of a shop task (see the module docstring)."""
    p: Mapping[str, Any] = task.world or {}
    cat = get_catalog(int(p["catalog_seed"]), int(p["catalog_size"]))
    w = cat.world.fork()
    for vid, stock in sorted(p.get("stock", {}).items()):
        w.update("variants", vid, stock=stock)
    for table, rows in account_tables(int(p["account_seed"])).items():
        for key, rec in rows.items():
            w.insert(table, key, rec)
    for key, rec in past_orders(int(p["account_seed"]), cat.seed, cat.size).items():
        w.insert("orders", key, rec)
    for c in p.get("coupons", []):
        w.insert("coupons", c["code"], {k: v for k, v in c.items() if k != "code"})
    w.insert("sessions", SESSION, {"user_id": USER, "coupon": None, "signed_in": True})
    return w
