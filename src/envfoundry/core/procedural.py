"""Procedural task sources: each task a pure function of (seed, split, index).

Splits are disjoint by construction: a candidate belongs to the split that a hash of its *problem
key* (what makes two tasks the same problem, ignoring phrasing) selects, so no problem can land in
two splits, whatever the seed. Duplicates within a split are skipped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import overload

from .seeding import derive_seed
from .task import Task

#: generate(rng) -> (problem_key, build) where build(split) makes the Task; the key alone decides
#: the split, so candidates of other splits are rejected before a Task is built
Generator = Callable[[random.Random], tuple[str, Callable[[str], Task]]]


class ProceduralTasks(Sequence[Task]):
    """A lazy, deterministic sequence of ``size`` tasks of one split.

    An environment usually takes the task source :meth:`source` makes:
    ``Environment(tasks=ProceduralTasks.source(generate, sizes={"train": 400, "test": 100}), ...)``.
    """

    @staticmethod
    def source(
        generate: Generator,
        *,
        sizes: Mapping[str, int],
        weights: Mapping[str, int] | None = None,
        max_attempts: int = 10_000,
    ) -> ProceduralSource:
        """The task source ``tasks(split, seed)`` of an environment whose tasks ``generate`` makes.

        ``sizes``: the tasks of each split (its keys are the environment's splits); ``weights``:
        the share of the problem space each split owns (default: ``sizes`` in lowest terms, so
        ``{"train": 400, "test": 100}`` gives ``{"train": 4, "test": 1}``).
        """
        return ProceduralSource(generate, sizes=sizes, weights=weights, max_attempts=max_attempts)

    def __init__(
        self,
        generate: Generator,
        *,
        split: str,
        size: int,
        seed: int,
        split_weights: dict[str, int],
        max_attempts: int = 10_000,
    ) -> None:
        if split not in split_weights:
            raise KeyError(f"unknown split {split!r}")
        self._gen = generate
        self.split = split
        self._size = size
        self._seed = seed
        self._weights = split_weights
        self._total = sum(split_weights.values())
        self._max_attempts = max_attempts
        self._items: list[Task] = []
        self._seen: set[str] = set()
        self._cursor = 0

    def split_of(self, key: str) -> str:
        bucket = derive_seed("split", key) % self._total
        for name, w in self._weights.items():
            if bucket < w:
                return name
            bucket -= w
        raise AssertionError("unreachable")

    def _fill(self, upto: int) -> None:
        misses = 0
        while len(self._items) <= upto:
            rng = random.Random(derive_seed(self._seed, self.split, self._cursor))
            self._cursor += 1
            key, build = self._gen(rng)
            task = build(self.split) if self.split_of(key) == self.split else None
            if task is None or task.id in self._seen:
                misses += 1
                if misses > self._max_attempts:
                    raise RuntimeError(
                        f"split {self.split!r} ran out of distinct problems after "
                        f"{len(self._items)} tasks; lower its size or widen the knobs"
                    )
                continue
            misses = 0
            self._seen.add(task.id)
            self._items.append(task)

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, i: int) -> Task: ...
    @overload
    def __getitem__(self, i: slice) -> list[Task]: ...
    def __getitem__(self, i: int | slice) -> Task | list[Task]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._size))]
        if i < 0:
            i += self._size
        if not 0 <= i < self._size:
            raise IndexError(i)
        self._fill(i)
        return self._items[i]

    def __iter__(self) -> Iterator[Task]:
        for i in range(self._size):
            yield self[i]


class ProceduralSource:
    """``tasks(split, seed) -> ProceduralTasks``, with the split names as ``splits`` (which
    :class:`~envfoundry.Environment` uses when it is given no ``splits``)."""

    def __init__(
        self, generate: Generator, *, sizes: Mapping[str, int], weights: Mapping[str, int] | None = None,
        max_attempts: int = 10_000,
    ) -> None:
        if not sizes:
            raise ValueError("ProceduralTasks.source needs at least one split in sizes")
        if any(not isinstance(v, int) or v < 0 for v in sizes.values()):
            raise ValueError(f"split sizes must be integers >= 0, got {dict(sizes)}")
        if weights is None:
            g = math.gcd(*sizes.values()) or 1
            weights = {k: v // g for k, v in sizes.items()}
        weights = dict(weights)
        if set(weights) != set(sizes):
            raise ValueError(f"split weights {sorted(weights)} and sizes {sorted(sizes)} name different splits")
        if any(not isinstance(v, int) or v < 0 for v in weights.values()) or not sum(weights.values()):
            raise ValueError(f"split weights must be integers >= 0, not all 0, got {weights}")
        starved = [k for k, v in sizes.items() if v and not weights[k]]
        if starved:
            raise ValueError(f"split(s) {starved} have tasks but weight 0: they would own no problems")
        self.generate = generate
        self.sizes = dict(sizes)
        self.weights = weights
        self.splits = tuple(sizes)
        self.max_attempts = max_attempts

    def __call__(self, split: str, seed: int) -> ProceduralTasks:
        return ProceduralTasks(self.generate, split=split, size=self.sizes[split], seed=seed,
                               split_weights=self.weights, max_attempts=self.max_attempts)
