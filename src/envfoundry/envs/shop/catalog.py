"""The seeded product catalog: products, variants (size x colour) with stock and prices in cents.

``get_catalog(seed, size)`` builds the catalog once per process (cached) as a :class:`World` with
tables ``products`` and ``variants``; every task world is a fork of it, so a rollout's cost grows
with what it changes, never with the catalog's size. The generator is a pure function of
``(seed, size)``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from envfoundry import World, derive_seed

from .search import SearchIndex
from .vocab import (
    ADJECTIVES,
    BLEND_OF,
    BRANDS,
    DECOY_SENTENCES,
    FEATURES,
    KINDS,
    MATERIAL_WORDS,
    Kind,
)

_ENDINGS = (99, 99, 99, 49, 95, 0, 50, 79, 29, 89)
_MATERIAL_PRICE = {"merino wool": 1.3, "cashmere blend": 1.4, "alpaca wool": 1.35, "leather": 1.3,
                   "down": 1.3, "damascus steel": 1.5, "walnut": 1.3, "linen": 1.15,
                   "organic cotton": 1.1, "cotton blend": 0.9, "polyester": 0.85, "plastic": 0.8,
                   "acrylic": 0.8, "PVC": 0.8}


class VariantRow(NamedTuple):
    id: str
    size: str
    colour: str
    price_cents: int
    stock: int


class ProductRow(NamedTuple):
    """The fields task generation filters on, as generated (before any per-task override)."""

    id: str
    material: str
    brand: str
    rating: float
    ship_days: int
    variants: tuple[VariantRow, ...]


@dataclass(frozen=True)
class Catalog:
    """A built catalog: the root world and read-only indexes over its static fields."""

    seed: int
    size: int
    world: World
    by_kind: Mapping[str, tuple[str, ...]]  # kind name -> product ids
    rows: Mapping[str, tuple[ProductRow, ...]]  # kind name -> products, for task generation
    index: SearchIndex

    def product(self, pid: str) -> Mapping[str, Any]:
        p = self.world.get("products", pid)
        if p is None:
            raise KeyError(pid)
        return p

    def variant(self, vid: str) -> Mapping[str, Any]:
        v = self.world.get("variants", vid)
        if v is None:
            raise KeyError(vid)
        return v


def money(cents: int) -> str:
    """``1249`` -> ``"$12.49"``."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def _composition(rng: random.Random, material: str) -> str:
    if material in BLEND_OF:
        main = rng.choice((30, 35, 40, 45, 50, 55, 60))
        other = rng.choice(("nylon", "acrylic", "polyester"))
        rest = 100 - main
        el = rng.choice((0, 2, 3, 5))
        return f"{main}% {BLEND_OF[material]}, {rest - el}% {other}" + (f", {el}% elastane" if el else "")
    if material in ("merino wool", "cotton", "organic cotton", "wool", "alpaca wool", "linen"):
        if rng.random() < 0.6:
            return f"100% {material}"
        return f"{rng.choice((85, 90, 95))}% {material}, rest elastane"
    return material


def _price(rng: random.Random, kind: Kind, material: str) -> int:
    lo, hi = kind.price
    x = lo + (hi - lo) * (rng.random() ** 1.6)
    x *= _MATERIAL_PRICE.get(material, 1.0)
    return max(199, int(x) // 100 * 100 + rng.choice(_ENDINGS))


def _title(rng: random.Random, kind: Kind, brand: str, material: str) -> tuple[str, str]:
    """(title, lookalike word or "") where a lookalike word belongs to another kind."""
    parts = [brand]
    if rng.random() < 0.35:
        parts.append(rng.choice(ADJECTIVES))
    words = MATERIAL_WORDS.get(material)
    if words and rng.random() < 0.7:
        parts.append(rng.choice(words))
    lookalike = rng.choice(kind.lookalike) if kind.lookalike and rng.random() < 0.35 else ""
    parts.append(lookalike or rng.choice(kind.words))
    parts.append(kind.noun)
    return " ".join(parts), lookalike


def _description(rng: random.Random, kind: Kind, title: str, lookalike: str, comp: str) -> str:
    f1, f2 = rng.sample(FEATURES[kind.category], 2)
    s = f"{title.split(' ', 1)[1]} with {f1} and {f2}. Material: {comp}."
    if lookalike:
        look = lookalike.lower().rsplit("-", 1)[0]
        s += " " + rng.choice(DECOY_SENTENCES).format(look=look)
    elif rng.random() < 0.5:
        s += f" One of our most popular {kind.name}."
    return s


def _variants(rng: random.Random, kind: Kind, pid: str, base: int) -> dict[str, dict[str, Any]]:
    n = len(kind.sizes)
    if n == 1:
        sizes = list(kind.sizes)
    else:
        k = rng.randint(min(n, 2), n)
        start = rng.randint(0, n - k)
        sizes = list(kind.sizes[start:start + k])
    colours = rng.sample(kind.colours, min(len(kind.colours), rng.choice((1, 1, 2, 2, 3, 4))))
    out: dict[str, dict[str, Any]] = {}
    size_step = rng.choice((0, 0, 100, 200))
    for si, size in enumerate(sizes):
        for colour in colours:
            premium = rng.choice((0, 0, 0, 0, 100, 200))
            stock = 0 if rng.random() < 0.1 else int(rng.choice((1, 2, 3, 5, 8, 12, 20, 35, 60)))
            vid = f"{pid}-{len(out) + 1}"
            out[vid] = {"product_id": pid, "size": size, "colour": colour,
                        "price_cents": base + si * size_step + premium, "stock": stock}
    return out


def build_catalog(seed: int, size: int) -> Catalog:
    """Generate ``size`` products (uncached; use :func:`get_catalog`)."""
    if size < 100:
        raise ValueError(f"catalog size must be >= 100, got {size}")
    rng = random.Random(derive_seed("shop-catalog", seed, size))
    weights = [k.weight for k in KINDS]
    width = max(5, len(str(size)))
    products: dict[str, dict[str, Any]] = {}
    variants: dict[str, dict[str, Any]] = {}
    by_kind: dict[str, list[str]] = {k.name: [] for k in KINDS}
    # every kind gets a floor of products so that all tasks can be generated in small catalogs
    plan = [k for k in KINDS for _ in range(max(2, size // 400))][:size]
    plan += rng.choices(KINDS, weights=weights, k=size - len(plan))
    rng.shuffle(plan)
    for i, kind in enumerate(plan, 1):
        pid = f"P{i:0{width}d}"
        brand = rng.choice(BRANDS[kind.category])
        material = rng.choice(kind.materials)
        title, lookalike = _title(rng, kind, brand, material)
        comp = _composition(rng, material)
        vs = _variants(rng, kind, pid, _price(rng, kind, material))
        rating = round(min(5.0, max(1.0, rng.gauss(4.2, 0.45))), 1)
        products[pid] = {
            "title": title, "brand": brand, "category": kind.category, "kind": kind.name,
            "material": material, "composition": comp,
            "description": _description(rng, kind, title, lookalike, comp),
            "rating": rating, "reviews": int(rng.lognormvariate(3.6, 1.3)),
            "ship_days": rng.choice((1, 2, 2, 3, 3, 3, 4, 5, 5, 7, 10)),
            "size_label": kind.size_label, "variant_ids": list(vs),
        }
        variants.update(vs)
        by_kind[kind.name].append(pid)
    world = World({"products": products, "variants": variants})
    index = SearchIndex.build(products, variants)
    rows = {k: tuple(ProductRow(pid, products[pid]["material"], products[pid]["brand"], products[pid]["rating"],
                                products[pid]["ship_days"],
                                tuple(VariantRow(vid, variants[vid]["size"], variants[vid]["colour"],
                                                 variants[vid]["price_cents"], variants[vid]["stock"])
                                      for vid in products[pid]["variant_ids"]))
                     for pid in pids)
            for k, pids in by_kind.items()}
    return Catalog(seed, size, world, {k: tuple(v) for k, v in by_kind.items()}, rows, index)


@functools.lru_cache(maxsize=4)
def get_catalog(seed: int = 0, size: int = 10_000) -> Catalog:
    """The catalog for ``(seed, size)``, built once per process."""
    return build_catalog(seed, size)
