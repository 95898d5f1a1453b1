"""Exact top-N over every item for a block of users, with each user's seen items masked.

Plain numpy, testable without Spark. The order is score descending, then item index
ascending, so results are reproducible and comparable with a brute-force reference. The
full user x item score matrix is never built: users are taken `block_rows` at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class TopN:
    """Ranked lists for a batch of users.

    Attributes:
        indices: (users, n) int32 item indices, best first; -1 pads rows shorter than n.
        scores: (users, n) float32 scores; -inf in padded places.
        counts: (users,) int32 number of real items per row: min(n, items not seen).
    """

    indices: np.ndarray
    scores: np.ndarray
    counts: np.ndarray


def seen_csr(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int):
    """Group (user, item) pairs into CSR arrays (indptr, indices) of each user's seen items."""
    order = np.argsort(user_idx, kind="stable")
    indices = np.asarray(item_idx, dtype=np.int64)[order]
    counts = np.bincount(np.asarray(user_idx, dtype=np.int64), minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices


def top_n_unseen(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    seen_indptr: np.ndarray,
    seen_indices: np.ndarray,
    n: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> TopN:
    """Return each user's exact top-n items by dot product, seen items excluded.

    Args:
        user_vecs: (users, d) user factors.
        item_vecs: (items, d) item factors.
        seen_indptr: (users + 1,) CSR row pointers into seen_indices.
        seen_indices: item indices each user has seen (duplicates allowed).
        n: list length wanted.
        block_bytes: memory for one block of scores; sets how many users go at a time.
    """
    users, items = user_vecs.shape[0], item_vecs.shape[0]
    if user_vecs.shape[1] != item_vecs.shape[1]:
        raise ValueError(
            f"user and item factors must have the same width "
            f"(got {user_vecs.shape[1]} and {item_vecs.shape[1]})"
        )
    if len(seen_indptr) != users + 1:
        raise ValueError(f"seen_indptr must have users + 1 = {users + 1} entries")
    n_eff = max(0, min(n, items))
    out = TopN(
        indices=np.full((users, n_eff), -1, dtype=np.int32),
        scores=np.full((users, n_eff), -np.inf, dtype=np.float32),
        counts=np.zeros(users, dtype=np.int32),
    )
    if n_eff == 0 or users == 0:
        return out
    item_t = np.ascontiguousarray(item_vecs, dtype=np.float32).T
    rows = max(1, block_bytes // (4 * items))
    for start in range(0, users, rows):
        stop = min(users, start + rows)
        scores = np.asarray(user_vecs[start:stop], dtype=np.float32) @ item_t
        _mask_seen(scores, seen_indptr[start : stop + 1], seen_indices)
        idx, val = _select(scores, n_eff)
        out.indices[start:stop] = idx
        out.scores[start:stop] = val
    finite = np.isfinite(out.scores)
    out.indices[~finite] = -1
    out.counts[:] = finite.sum(axis=1)
    return out


def _mask_seen(scores: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Set the seen items of each row of a block to -inf, in place."""
    lo, hi = indptr[0], indptr[-1]
    cols = indices[lo:hi]
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    scores[rows, cols] = -np.inf


def _select(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the n best (index, score) per row, ordered by score desc then index asc."""
    if n == scores.shape[1]:
        idx = np.broadcast_to(np.arange(n), scores.shape).copy()
    else:
        idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        _fix_boundary_ties(scores, idx, n)
    val = np.take_along_axis(scores, idx, axis=1)
    # lexsort's last key is primary: score descending, then index ascending.
    order = np.lexsort((idx, -val), axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(val, order, axis=1)


def _fix_boundary_ties(scores: np.ndarray, idx: np.ndarray, n: int) -> None:
    """Redo rows where items tied with the n-th score were picked by position, not index."""
    kth = np.take_along_axis(scores, idx, axis=1).min(axis=1)
    ties_total = (scores == kth[:, None]).sum(axis=1)
    ties_taken = (np.take_along_axis(scores, idx, axis=1) == kth[:, None]).sum(axis=1)
    # Rows whose cut falls in -inf hold every finite item already; the rest must be exact.
    for r in np.flatnonzero((ties_total > ties_taken) & np.isfinite(kth)):
        row = scores[r]
        above = np.flatnonzero(row > kth[r])
        level = np.flatnonzero(row == kth[r])[: n - len(above)]
        idx[r] = np.concatenate([above, level])
