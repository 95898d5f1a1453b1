"""Seeded MovieLens-25M-shaped data: long-tailed interactions and factor matrices.

The defaults are the ML-25M shape (162,541 users, 62,423 items, about 25M interactions, every
user with at least 20, the most active with thousands). Everything is vectorised numpy, so the
full shape builds in seconds; tests use small shapes (`Shape(users=300, items=500, ...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ML25M_USERS = 162_541
ML25M_ITEMS = 62_423
ML25M_INTERACTIONS = 25_000_095
ZIPF = 0.9  # item popularity ~ rank ** -ZIPF


@dataclass(frozen=True)
class Shape:
    """What to generate: sizes, factor width, and the seen-list bounds."""

    users: int = ML25M_USERS
    items: int = ML25M_ITEMS
    interactions: int = ML25M_INTERACTIONS
    dim: int = 64
    min_seen: int = 20
    max_seen: int = 32_000
    seed: int = 25


@dataclass(frozen=True)
class Synthetic:
    """Factors and seen lists (CSR over users, item indices ascending within a user)."""

    user_vecs: np.ndarray  # (users, dim) float32
    item_vecs: np.ndarray  # (items, dim) float32
    seen_indptr: np.ndarray  # (users + 1,) int64
    seen_indices: np.ndarray  # int64


def generate(shape: Shape, ties: bool = False) -> Synthetic:
    """Return seeded data of the given shape.

    Item popularity is Zipf-like and user activity log-normal, both long-tailed; item factors
    carry a popularity direction that users like, so many of a user's best items are ones they
    have seen (the mask matters). With ties=True the factors are small integers, so exact
    score ties are everywhere.
    """
    rng = np.random.default_rng(shape.seed)
    rank_of = rng.permutation(shape.items)  # item index -> popularity rank (0 = most popular)
    indptr, indices = _seen_lists(rng, shape, rank_of)
    if ties:
        users = rng.integers(-2, 3, (shape.users, shape.dim)).astype(np.float32)
        items = rng.integers(-2, 3, (shape.items, shape.dim)).astype(np.float32)
    else:
        scale = np.float32(1 / np.sqrt(shape.dim))
        users = rng.standard_normal((shape.users, shape.dim), dtype=np.float32) * scale
        items = rng.standard_normal((shape.items, shape.dim), dtype=np.float32) * scale
        log_pop = -ZIPF * np.log1p(rank_of).astype(np.float32)
        items[:, 0] = (log_pop - log_pop.mean()) / log_pop.std() * 0.5
        users[:, 0] = np.abs(users[:, 0]) + 0.5
    return Synthetic(users, items, indptr, indices)


def _seen_lists(rng: np.random.Generator, shape: Shape, rank_of: np.ndarray):
    """Draw each user's distinct seen items, popular items more often, as CSR arrays."""
    hi = min(shape.max_seen, shape.items)
    lo = min(shape.min_seen, hi)
    activity = rng.lognormal(0.0, 1.3, shape.users)
    target = max(shape.interactions - lo * shape.users, 0)
    counts = np.minimum(lo + np.floor(activity / activity.sum() * target).astype(np.int64), hi)
    # Draw a third more than needed, drop repeats, then cut each user back to their count.
    drawn = np.minimum(counts + counts // 3 + 8, shape.items)
    owners = np.repeat(np.arange(shape.users, dtype=np.int64), drawn)
    item_of_rank = np.argsort(rank_of)
    keys = owners * shape.items + item_of_rank[_zipf_ranks(rng, len(owners), shape.items)]
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    owners = keys // shape.items
    starts = np.searchsorted(owners, np.arange(shape.users))
    keys = keys[np.arange(len(keys)) - starts[owners] < counts[owners]]
    indptr = np.zeros(shape.users + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // shape.items, minlength=shape.users), out=indptr[1:])
    return indptr, keys % shape.items


def _zipf_ranks(rng: np.random.Generator, size: int, items: int) -> np.ndarray:
    """Draw popularity ranks 0..items-1 with P(rank r) ~ (r + 1) ** -ZIPF (inverse CDF)."""
    a = 1.0 - ZIPF
    top = (items + 1.0) ** a - 1.0
    x = (1.0 + rng.random(size) * top) ** (1.0 / a)
    return np.minimum(x.astype(np.int64) - 1, items - 1)
