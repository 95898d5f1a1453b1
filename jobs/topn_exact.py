"""The exact half of the top-N kernel: candidates in, ranked lists with exact scores out.

The score of (user, item) is defined, on every device, as the float64 sum of the float64
products u[0]*v[0] + u[1]*v[1] + ... taken in that order (each product of two float32 values
is exact in float64), rounded once to float32. The order is that score descending, then item
index ascending. `exact_scores` is the same definition in plain numpy for references.

The candidates come from a fast approximate product (bf16 or float32 GEMM on CPU or GPU)
with a proven error bound, so only a few hundred items per user need the exact sum.
"""

from __future__ import annotations

import numba
import numpy as np


def exact_scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Return the (users, items) float32 score matrix by the exact definition (for references)."""
    u = np.asarray(users, dtype=np.float32).astype(np.float64)
    v = np.asarray(items, dtype=np.float32).astype(np.float64)
    acc = np.zeros((u.shape[0], v.shape[0]), dtype=np.float64)
    for j in range(u.shape[1]):
        acc += u[:, j, None] * v[None, :, j]
    return acc.astype(np.float32)


@numba.njit(parallel=True, cache=True, nogil=True)
def finish_rows(
    indptr, cols, approx, scale, tiny, norms, users, items, n, out_idx, out_scores, out_counts
):  # pragma: no cover - compiled; exercised through top_n_unseen
    """Rank each row's candidates (CSR over rows) exactly and write the best n, in place.

    Args:
        indptr: (rows + 1,) int64 offsets of each row's candidates in cols/approx.
        cols: candidate item indices, ascending within a row.
        approx: float32 approximate scores of the candidates.
        scale, tiny: (rows,) float64: |approx - exact| <= scale |v| + tiny for item v.
        norms: |v| of every item (float64).
        users: (rows, d) float64 user factors.
        items: (items, d) float32 item factors.
        n: list length.
        out_idx, out_scores, out_counts: the block's rows of the TopN arrays.
    """
    for r in numba.prange(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        out_counts[r] = rank_row(
            cols[lo:hi], approx[lo:hi], scale[r], tiny[r], norms, users[r], items, n,
            out_idx[r], out_scores[r],
        )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def rank_row(
    cols, approx, scale, tiny, norms, user, items, n, out_idx, out_scores
):  # pragma: no cover - compiled
    """Write the exact best n of one row's candidates (cols ascending); return how many.

    The n candidates with the largest approximate scores (at least kth) have exact scores of
    at least kth - scale W - tiny, W their largest norm; an item v can beat them only if its
    approximate score is at least that minus scale |v| + tiny. Only those are scored exactly.
    items is (items, d) float32; user is (d,) float64.
    """
    keep = cols
    if len(cols) > n:
        kth = -np.partition(-approx, n - 1)[n - 1]  # the n-th largest approximate score
        witness = 0.0
        for i in range(len(cols)):
            if approx[i] >= kth:
                witness = max(witness, norms[cols[i]])
        base = np.float64(kth) - 2 * tiny - scale * witness
        keep = cols[approx >= base - scale * norms[cols]]
    k = len(keep)
    acc = np.empty(k, dtype=np.float64)
    exact_dots(user, items, keep, acc)
    exact = acc.astype(np.float32)
    order = np.argsort(-exact, kind="mergesort")  # stable: ties stay in index order
    m = min(n, k)
    for i in range(m):
        out_idx[i] = keep[order[i]]
        out_scores[i] = exact[order[i]]
    return m


@numba.njit(cache=True, nogil=True)
def exact_dots(user, items, keep, out):  # pragma: no cover - compiled
    """Write the float64 in-order dot of user with each kept item row into out.

    Four items at a time: four independent sums keep the FPU busy while each one still
    adds its products in j order.
    """
    d, k = items.shape[1], len(keep)
    full = k - k % 4
    for c in range(0, full, 4):
        v0, v1, v2, v3 = items[keep[c]], items[keep[c + 1]], items[keep[c + 2]], items[keep[c + 3]]
        a0 = a1 = a2 = a3 = 0.0
        for j in range(d):
            uj = user[j]
            a0 += uj * np.float64(v0[j])
            a1 += uj * np.float64(v1[j])
            a2 += uj * np.float64(v2[j])
            a3 += uj * np.float64(v3[j])
        out[c], out[c + 1], out[c + 2], out[c + 3] = a0, a1, a2, a3
    for c in range(full, k):
        vec = items[keep[c]]
        acc = 0.0
        for j in range(d):
            acc += user[j] * np.float64(vec[j])
        out[c] = acc
