"""Keyword search over the catalog: an inverted index on static fields, live prices and stock.

Relevance is a sum over query tokens of ``idf * field weight`` (title 3, kind/material/brand 2,
category/description 1), ties broken by review count then id, so the default order is stable and
a task can record how deep its answer sits. Prices and stock are read from the episode's world,
so per-task stock overrides and price changes show up in results.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envfoundry import World

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_STOP = frozenset(("a", "an", "and", "the", "for", "with", "of", "in", "to", "my", "me", "pair",
                   "pairs", "size", "some", "i", "need", "want", "buy", "s"))
SORTS = ("relevance", "price_asc", "price_desc", "rating", "reviews")


def tokens(text: str) -> list[str]:
    out = []
    for t in _TOKEN.findall(text.lower()):
        if t in _STOP or (len(t) == 1 and not t.isdigit()):
            continue
        if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
            t = t[:-1]
        out.append(t)
    return out


@dataclass(frozen=True, slots=True)
class Hit:
    product_id: str
    price_cents: int  # cheapest variant that passes the variant filters
    in_stock: bool


@dataclass(frozen=True, slots=True)
class Meta:
    category: str
    brand: str
    material: str
    rating: float
    reviews: int
    variant_ids: tuple[str, ...]
    min_price: int  # over all variants, as generated
    stocked: bool  # any variant in stock, as generated


# static (size, colour, price_cents, stock) of a variant, lower-cased for matching
VRow = tuple[str, str, int, int]


class SearchIndex:
    """Built once per catalog. :meth:`search` takes the variants an episode changed (``dirty``)
    and reads only those from its world; everything else comes from the static index."""

    def __init__(self, postings: dict[str, list[tuple[str, float]]], meta: dict[str, Meta],
                 vrows: dict[str, VRow]) -> None:
        self._postings = postings
        self._meta = meta
        self._vrows = vrows
        self._order = sorted(meta, key=lambda p: (-meta[p].reviews, p))  # browse order
        self._tie = {p: i for i, p in enumerate(self._order)}  # tie-break: more reviews, then id

    @classmethod
    def build(cls, products: Mapping[str, Mapping[str, Any]],
              variants: Mapping[str, Mapping[str, Any]]) -> SearchIndex:
        raw: dict[str, dict[str, float]] = {}
        meta: dict[str, Meta] = {}
        vrows: dict[str, VRow] = {}
        fields = (("title", 3.0), ("kind", 2.0), ("material", 2.0), ("brand", 2.0),
                  ("category", 1.0), ("description", 1.0))
        for pid, p in products.items():
            best: dict[str, float] = {}
            for f, w in fields:
                for t in tokens(str(p[f])):
                    if best.get(t, 0.0) < w:
                        best[t] = w
            for t, w in best.items():
                raw.setdefault(t, {})[pid] = w
            rows = []
            for vid in p["variant_ids"]:
                v = variants[vid]
                vrows[vid] = (str(v["size"]).lower(), str(v["colour"]).lower(), v["price_cents"], v["stock"])
                rows.append(vrows[vid])
            meta[pid] = Meta(p["category"], p["brand"].lower(), p["material"], p["rating"],
                             p["reviews"], tuple(p["variant_ids"]), min(r[2] for r in rows),
                             any(r[3] > 0 for r in rows))
        n = len(products)
        postings = {}
        for t, hits in raw.items():
            idf = math.log(1 + n / len(hits))
            postings[t] = [(pid, w * idf) for pid, w in hits.items()]
        return cls(postings, meta, vrows)

    def knows(self, pid: str) -> bool:
        return pid in self._meta

    def rank(self, query: str, pid: str) -> int:
        """1-based position of ``pid`` in the unfiltered relevance order of ``query`` as generated
        (past the end when the query does not find it); cheaper than a full search."""
        scores: dict[str, float] = {}
        for t in dict.fromkeys(tokens(query)):
            for p, w in self._postings.get(t, ()):
                scores[p] = scores.get(p, 0.0) + w
        if pid not in scores:
            return len(scores) + 1
        tie = self._tie
        me = (-scores[pid], tie[pid])
        return 1 + sum(1 for p, sc in scores.items() if (-sc, tie[p]) < me)

    def search(
        self,
        world: World,
        dirty: frozenset[str] | set[str],
        query: str,
        *,
        category: str | None = None,
        brand: str | None = None,
        material: str | None = None,
        min_rating: float | None = None,
        max_price_cents: int | None = None,
        size: str | None = None,
        colour: str | None = None,
        in_stock: bool = False,
        sort: str = "relevance",
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[int, list[Hit]]:
        """(number of matching products, the hits from ``offset``, at most ``limit`` of them).

        ``dirty`` holds the ids of variants whose price or stock may differ from the catalog in
        ``world``; only those are read from it.
        """
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r}; sorts: {', '.join(SORTS)}")
        meta = self._meta
        qt = tokens(query)
        scores: dict[str, float] = {}
        if qt:
            for t in dict.fromkeys(qt):
                for pid, w in self._postings.get(t, ()):
                    scores[pid] = scores.get(pid, 0.0) + w
            pool: Iterable[str] = scores
        else:
            pool = self._order
        brand_l = brand.lower() if brand else None
        if category or brand_l or material or min_rating is not None:
            pool = [pid for pid in pool
                    if not ((category and meta[pid].category != category) or (brand_l and meta[pid].brand != brand_l)
                            or (material and meta[pid].material != material)
                            or (min_rating is not None and meta[pid].rating < min_rating))]
        size_l = size.lower() if size else None
        colour_l = colour.lower() if colour else None
        per_variant = bool(size_l or colour_l or in_stock)
        priced: dict[str, tuple[int, bool]] = {}
        if per_variant or max_price_cents is not None or sort.startswith("price"):
            for pid in pool:
                best, stocked = self._price(world, dirty, meta[pid], size_l, colour_l, in_stock, per_variant)
                if best is not None and (max_price_cents is None or best <= max_price_cents):
                    priced[pid] = (best, stocked)
            pool = priced
        tie = self._tie
        n = len(pool)
        if sort == "relevance" and not qt:
            ordered = list(itertools.islice(pool, offset, None if limit is None else offset + limit))
        else:
            if sort == "relevance":
                keyed = [(-scores[p], tie[p]) for p in pool]
            elif sort == "price_asc":
                keyed = [(priced[p][0], -scores.get(p, 0.0), tie[p]) for p in pool]
            elif sort == "price_desc":
                keyed = [(-priced[p][0], -scores.get(p, 0.0), tie[p]) for p in pool]
            elif sort == "rating":
                keyed = [(-meta[p].rating, -scores.get(p, 0.0), tie[p]) for p in pool]
            else:
                keyed = [(-meta[p].reviews, -scores.get(p, 0.0), tie[p]) for p in pool]
            top = sorted(keyed) if limit is None else heapq.nsmallest(offset + limit, keyed)
            ordered = [self._order[k[-1]] for k in top[offset:]]
        hits = []
        for pid in ordered:
            best, stocked = priced.get(pid) or self._price(world, dirty, meta[pid], None, None, False, False)
            assert best is not None
            hits.append(Hit(pid, best, stocked))
        return n, hits

    def _price(self, world: World, dirty: frozenset[str] | set[str], m: Meta, size: str | None,
               colour: str | None, in_stock: bool, per_variant: bool) -> tuple[int | None, bool]:
        if not per_variant and (not dirty or dirty.isdisjoint(m.variant_ids)):
            return m.min_price, m.stocked
        return self._variants(world, dirty, m, size, colour, in_stock)

    def _variants(self, world: World, dirty: frozenset[str] | set[str], m: Meta, size: str | None,
                  colour: str | None, in_stock: bool) -> tuple[int | None, bool]:
        best: int | None = None
        stocked = False
        for vid in m.variant_ids:
            row = self._vrows[vid]
            price, stock = row[2], row[3]
            if vid in dirty:
                v = world.get("variants", vid)
                if v is None:
                    continue
                price, stock = v["price_cents"], v["stock"]
            if (size and row[0] != size) or (colour and row[1] != colour) or (in_stock and stock <= 0):
                continue
            stocked = stocked or stock > 0
            if best is None or price < best:
                best = price
        return best, stocked
