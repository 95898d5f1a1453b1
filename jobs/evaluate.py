"""Offline evaluation of ranked lists: temporal holdout, ranking metrics and baselines.

Plain numpy, testable without Spark. Lists rank the full catalogue with each user's training
items masked (no sampled negatives), through the same kernel the job scores with
(`jobs.topn.top_n_unseen`). Relevance is binary: a held-out item is relevant when its rating
reaches a threshold. Metric definitions (K the cut-off, rel a user's relevant set):

- precision@K = hits in the top K / K
- recall@K = hits in the top K / min(K, |rel|), so a perfect list scores 1
- ndcg@K = DCG / ideal DCG, DCG = sum over hits at rank r of 1 / log2(r + 1), the ideal
  DCG putting min(K, |rel|) hits first
- map@K = mean over users of AP@K = sum over hits at rank r of precision@r / min(K, |rel|)

Each is averaged over the users with at least one relevant item. Beyond accuracy, over the
same top-K lists (`list_metrics`):

- coverage = distinct items in any list / items in the catalogue
- novelty = mean over listed items of the self-information -log2(users with the item in
  training / users), an item nobody has counted as one user
- diversity (intra-list) = mean over lists of the mean pairwise cosine distance 1 - cos(e_i, e_j)
  of the items' L2-normalised text embeddings
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.topn import TopN, seen_csr, top_n_unseen

CSR = tuple[np.ndarray, np.ndarray]
DEFAULT_RELEVANT_RATING = 4.0


def holdout_split(
    user_idx: np.ndarray, timestamp: np.ndarray, k: int, min_train: int = 1
) -> np.ndarray:
    """Mark each user's last k interactions by time as test.

    Ties in time are broken by position: of two interactions with the same timestamp the
    later one in the input counts as later. Users with fewer than k + min_train interactions
    keep them all in training, so every evaluated user has some history.

    Args:
        user_idx: (n,) user index of each interaction.
        timestamp: (n,) time of each interaction.
        k: interactions held out per user.
        min_train: interactions a user must keep in training to have any held out.

    Returns:
        (n,) bool mask, True for the test interactions.
    """
    user_idx = np.asarray(user_idx)
    if len(timestamp) != len(user_idx):
        raise ValueError(
            f"user_idx and timestamp must have the same length "
            f"(got {len(user_idx)} and {len(timestamp)})"
        )
    if k < 0 or min_train < 0:
        raise ValueError(f"k and min_train must be >= 0 (got {k} and {min_train})")
    n = len(user_idx)
    # lexsort's last key is primary: user, then time, then position.
    order = np.lexsort((np.arange(n), np.asarray(timestamp), user_idx))
    sorted_users = user_idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank_from_end = np.repeat(starts + sizes, sizes) - 1 - np.arange(n)
    eligible = np.repeat(sizes >= k + min_train, sizes)
    mask = np.zeros(n, dtype=bool)
    mask[order] = eligible & (rank_from_end < k)
    return mask


def relevant_csr(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray | None,
    n_users: int,
    threshold: float | None = DEFAULT_RELEVANT_RATING,
) -> CSR:
    """Return each user's relevant items as CSR arrays (indptr, indices).

    Args:
        user_idx: (n,) user index of each held-out interaction.
        item_idx: (n,) item index of each held-out interaction.
        rating: (n,) ratings, or None when every interaction is relevant.
        n_users: number of users (rows of the CSR).
        threshold: lowest relevant rating; None makes every interaction relevant.
    """
    keep = np.ones(len(user_idx), dtype=bool)
    if rating is not None and threshold is not None:
        keep = np.asarray(rating) >= threshold
    return seen_csr(np.asarray(user_idx)[keep], np.asarray(item_idx)[keep], n_users)


def ranking_metrics(
    top_indices: np.ndarray, relevant_indptr: np.ndarray, relevant_indices: np.ndarray, k: int
) -> dict:
    """Compute precision, recall, NDCG and MAP at k, averaged over users with relevant items.

    Args:
        top_indices: (users, n) ranked item indices per user, best first, -1 padded; only the
            first k columns count, and fewer than k columns count as misses.
        relevant_indptr: (users + 1,) CSR row pointers of the relevant items.
        relevant_indices: relevant item indices (duplicates within a user count once).
        k: cut-off.

    Returns:
        {"k", "users", "precision", "recall", "ndcg", "map"}; the metrics are 0.0 when no user
        has a relevant item.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    top = np.asarray(top_indices)[:, :k].astype(np.int64)
    users = top.shape[0]
    if len(relevant_indptr) != users + 1:
        raise ValueError(
            f"relevant_indptr must have users + 1 = {users + 1} entries "
            f"(got {len(relevant_indptr)})"
        )
    hits, n_rel = _hits(top, relevant_indptr, relevant_indices)
    evaluated = n_rel > 0
    if not evaluated.any():
        return {"k": k, "users": 0, "precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    hits, n_rel = hits[evaluated], n_rel[evaluated]
    denom = np.minimum(k, n_rel)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: hits.shape[1]]).sum(axis=1)
    idcg = np.cumsum(discounts)[denom - 1]
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_r = np.cumsum(hits, axis=1) / ranks
    ap = (precision_at_r * hits).sum(axis=1) / denom
    n_hits = hits.sum(axis=1)
    return {
        "k": k,
        "users": int(evaluated.sum()),
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / denom)),
        "ndcg": float(np.mean(dcg / idcg)),
        "map": float(np.mean(ap)),
    }


def _hits(top: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return a (users, n) 0/1 matrix of relevant ranked items and each user's relevant count."""
    users = top.shape[0]
    rel_users = np.repeat(np.arange(users, dtype=np.int64), np.diff(indptr))
    rel_items = np.asarray(indices, dtype=np.int64)[indptr[0] : indptr[-1]]
    # One int64 key per (user, item) pair lets np.isin match whole rows at once.
    width = max(int(top.max(initial=-1)), int(rel_items.max(initial=-1))) + 2
    rel_keys = np.unique(rel_users * width + rel_items + 1)
    n_rel = np.bincount(rel_keys // width, minlength=users)
    top_keys = np.arange(users, dtype=np.int64)[:, None] * width + top + 1
    hits = np.isin(top_keys, rel_keys) & (top >= 0)
    return hits.astype(np.float64), n_rel


def popularity_scores(item_idx: np.ndarray, n_items: int) -> np.ndarray:
    """Return the number of interactions of each item as (n_items,) float32."""
    return np.bincount(np.asarray(item_idx, dtype=np.int64), minlength=n_items).astype(np.float32)


def popularity_factors(item_idx: np.ndarray, n_users: int, n_items: int) -> tuple[np.ndarray, ...]:
    """Return 1-wide (user, item) factors whose dot products rank items by popularity."""
    users = np.ones((n_users, 1), dtype=np.float32)
    return users, popularity_scores(item_idx, n_items)[:, None]


def popularity_top_n(
    item_idx: np.ndarray, n_items: int, seen_indptr: np.ndarray, seen_indices: np.ndarray, n: int
) -> TopN:
    """Return each user's n most popular unseen items (ties by item index ascending)."""
    n_users = len(seen_indptr) - 1
    users, items = popularity_factors(item_idx, n_users, n_items)
    return top_n_unseen(users, items, seen_indptr, seen_indices, n)


@dataclass(frozen=True)
class ItemStats:
    """What the beyond-accuracy metrics need to know about the items.

    Attributes:
        users_per_item: (n_items,) training users of each item.
        n_users: users in the training data.
        embeddings: (n_items, d) L2-normalised text embeddings, or None (no diversity).
    """

    users_per_item: np.ndarray
    n_users: int
    embeddings: np.ndarray | None = None


def list_metrics(top_indices: np.ndarray, stats: ItemStats) -> dict:
    """Return coverage, novelty and intra-list diversity of ranked lists (-1 is padding)."""
    top = np.asarray(top_indices, dtype=np.int64)
    valid = top >= 0
    listed = top[valid]
    n_items = len(stats.users_per_item)
    if listed.size == 0:
        return {"coverage": 0.0, "novelty": 0.0, "diversity": 0.0}
    share = np.maximum(stats.users_per_item[listed], 1) / max(stats.n_users, 1)
    out = {
        "coverage": float(len(np.unique(listed)) / n_items),
        "novelty": float(np.mean(-np.log2(share))),
        "diversity": 0.0,
    }
    if stats.embeddings is not None:
        out["diversity"] = _diversity(top, valid, stats.embeddings)
    return out


def _diversity(top: np.ndarray, valid: np.ndarray, embeddings: np.ndarray) -> float:
    """Mean over lists of two items or more of 1 - the mean pairwise cosine of their items."""
    vecs = np.asarray(embeddings, dtype=np.float64)[np.where(valid, top, 0)]
    vecs[~valid] = 0.0
    n = valid.sum(axis=1)
    rows = n >= 2
    if not rows.any():
        return 0.0
    # For unit vectors, the sum over ordered pairs i != j of cos = |sum e|^2 - n.
    total = np.square(vecs.sum(axis=1)).sum(axis=1) - n
    mean_cos = total[rows] / (n[rows] * (n[rows] - 1))
    return float(np.mean(1.0 - mean_cos))


def coverage_by_decile(top_indices: np.ndarray, users_per_item: np.ndarray) -> list[float]:
    """Return, per popularity decile of the catalogue (least popular first), the share of its
    items that appear in some list."""
    n_items = len(users_per_item)
    # Ties in popularity are split by item index so the deciles have equal sizes.
    order = np.lexsort((np.arange(n_items), users_per_item))
    decile = np.empty(n_items, dtype=np.int64)
    decile[order] = np.arange(n_items) * 10 // max(n_items, 1)
    listed = np.zeros(n_items, dtype=bool)
    top = np.asarray(top_indices)
    listed[top[top >= 0]] = True
    sizes = np.bincount(decile, minlength=10)
    hits = np.bincount(decile[listed], minlength=10)
    return [float(h / s) if s else 0.0 for h, s in zip(hits, sizes, strict=True)]


def rank_model(
    user_factors: np.ndarray, item_factors: np.ndarray, train: CSR, relevant: CSR, k: int
) -> tuple[TopN, CSR]:
    """Return the top-k lists of the users with relevant items, and their relevant CSR."""
    n_users = user_factors.shape[0]
    for name, (indptr, _) in (("train", train), ("relevant", relevant)):
        if len(indptr) != n_users + 1:
            raise ValueError(
                f"{name} CSR must have n_users + 1 = {n_users + 1} row pointers (got {len(indptr)})"
            )
    # Only users with something to find are ranked: the rest would not be averaged anyway.
    rows = np.flatnonzero(np.diff(relevant[0]) > 0)
    top = top_n_unseen(user_factors[rows], item_factors, *_take_rows(train, rows), k)
    return top, _take_rows(relevant, rows)


def evaluate_model(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: CSR,
    relevant: CSR,
    k: int,
    stats: ItemStats | None = None,
) -> dict:
    """Rank the full catalogue for each user with relevant items and score the lists.

    Args:
        user_factors: (n_users, d) user factors.
        item_factors: (n_items, d) item factors; score = user_factors[u] @ item_factors[i].
        train: CSR (indptr, indices) of each user's training items, masked from the lists.
        relevant: CSR (indptr, indices) of each user's relevant held-out items.
        k: list length and metric cut-off.
        stats: item statistics; when given, the `list_metrics` are added.

    Returns:
        The dict of `ranking_metrics`, plus coverage, novelty and diversity with stats.
    """
    top, rel = rank_model(user_factors, item_factors, train, relevant, k)
    metrics = ranking_metrics(top.indices, *rel, k)
    if stats is not None:
        metrics.update(list_metrics(top.indices, stats))
    return metrics


def _take_rows(csr: CSR, rows: np.ndarray) -> CSR:
    """Return the CSR arrays of the given rows, in that order."""
    indptr, indices = csr
    starts, sizes = indptr[rows], np.diff(indptr)[rows]
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out_ptr[1:])
    gather = np.repeat(starts - out_ptr[:-1], sizes) + np.arange(out_ptr[-1])
    return out_ptr, np.asarray(indices)[gather]
