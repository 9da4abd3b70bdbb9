"""Seed derivation by hashing, never by ``seed + index`` (neighbouring streams would overlap)."""

from __future__ import annotations

import hashlib
import random

_MASK = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (their ``repr`` joined by NUL).

    ``derive_seed(run_seed, task_id, sample)`` gives each rollout its own independent stream.
    """
    data = "\x00".join(map(repr, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") & _MASK


def rng_for(*parts: object) -> random.Random:
    """A ``random.Random`` seeded by :func:`derive_seed` of ``parts``."""
    return random.Random(derive_seed(*parts))
