"""Similar items: text neighbours from the ScaNN index, re-ranked with the CF factors.

Pure numpy plus a searcher from `jobs.scann_index`; the `build_index` stage calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jobs.scann_index import DEFAULT_BLOCK_BYTES, build_searcher, check_embeddings, search_rows


def similar_items(
    embeddings: np.ndarray,
    item_factors: np.ndarray | None,
    n: int,
    candidates: int = 100,
    cf_weight: float = 0.5,
    searcher: Any = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Return every item's n most similar other items.

    Candidates come from the text index (the item itself excluded, by row, even when other
    items have the same vector); they are ranked by
    (1 - cf_weight) * text cosine + cf_weight * cosine of the CF item factors, or by the text
    cosine alone without factors. Ties go to the lower row. Items are taken a block at a time.

    Args:
        embeddings: (items, dim) L2-normalised float32 text embeddings.
        item_factors: (items, f) CF factors to compare, or None. Pass only the columns to
            compare: drop an item-bias column first (`factors[:, :-1]`). Normalised here; an
            all-zero row has cosine 0 with everything.
        n: similar items per item.
        candidates: text neighbours re-ranked per item (raised to n when smaller).
        cf_weight: weight of the CF cosine, in [0, 1].
        searcher: a searcher over `embeddings` (from `build_searcher`); built when None.
        block_bytes: memory for the candidate vectors of one block of items.

    Returns:
        (indices, scores): (items, n) int32 rows, best first, -1 padding where fewer than n
        exist; (items, n) float32 scores, -inf in padded places.
    """
    x = check_embeddings(embeddings)
    if n < 0 or candidates < 1 or not 0.0 <= cf_weight <= 1.0:
        raise ValueError(
            f"need n >= 0, candidates >= 1 and 0 <= cf_weight <= 1 "
            f"(got {n}, {candidates}, {cf_weight})"
        )
    factors = None
    if item_factors is not None and cf_weight > 0:
        factors = _unit_rows(item_factors, len(x))
    indices = np.full((len(x), n), -1, dtype=np.int32)
    scores = np.full((len(x), n), -np.inf, dtype=np.float32)
    width = min(max(candidates, n), len(x) - 1)
    if n == 0 or width == 0:
        return indices, scores
    if searcher is None:
        searcher = build_searcher(x, k=width + 1)
    elif searcher.size() != len(x):
        raise ValueError(f"searcher holds {searcher.size()} items, embeddings {len(x)}")
    take = min(n, width)
    per_row = 4 * (width + 1) * (x.shape[1] + (factors.shape[1] if factors is not None else 0))
    step = max(1, block_bytes // per_row)
    for start in range(0, len(x), step):
        stop = min(len(x), start + step)
        cand = _other_rows(searcher, x, start, stop, width)
        blended = _blend(x, factors, start, cand, cf_weight)
        indices[start:stop, :take], scores[start:stop, :take] = _rank(cand, blended, take)
    return indices, scores


def _unit_rows(factors: np.ndarray, count: int) -> np.ndarray:
    """Return the factors with rows scaled to unit length (zero rows stay zero)."""
    f = np.asarray(factors, dtype=np.float32)
    if f.ndim != 2 or f.shape[0] != count:
        raise ValueError(f"item_factors must be ({count}, f), one row per item (got {f.shape})")
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)


def _other_rows(searcher: Any, x: np.ndarray, start: int, stop: int, width: int) -> np.ndarray:
    """Return the top `width` text neighbours of rows start..stop, each row itself left out."""
    rows, _ = search_rows(searcher, x[start:stop], width + 1)
    is_self = rows == np.arange(start, stop)[:, None]
    # An item outranked by its duplicates may be missing from its own list: drop the weakest.
    is_self[~is_self.any(axis=1), -1] = True
    return rows[~is_self].reshape(stop - start, width)


def _blend(
    x: np.ndarray, factors: np.ndarray | None, start: int, cand: np.ndarray, cf_weight: float
) -> np.ndarray:
    """Score each candidate of rows start.. by text cosine, blended with the CF cosine."""
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    own = slice(start, start + len(cand))
    score = (x[safe] @ x[own, :, None])[..., 0]
    if factors is not None:
        cf = (factors[safe] @ factors[own, :, None])[..., 0]
        score = (1.0 - cf_weight) * score + cf_weight * cf
    score = score.astype(np.float32)
    score[~valid] = -np.inf
    return score


def _rank(cand: np.ndarray, score: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the n best candidates per row by score descending, then row ascending."""
    # lexsort's last key is primary.
    order = np.lexsort((cand, -score), axis=1)[:, :n]
    idx = np.take_along_axis(cand, order, axis=1)
    val = np.take_along_axis(score, order, axis=1)
    idx[~np.isfinite(val)] = -1
    return idx.astype(np.int32), val
