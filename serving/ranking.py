"""Search ranking: ScaNN candidates for a query vector, the user's seen items dropped, then
an optional blend with the user's CF score. Plain numpy over `SearchAssets`.

Personalisation re-orders the items that match the query; it does not pull in items that
barely match. The re-ranked head is the unseen candidates whose query score is within
`margin` of the best one (at least the n best): the cosines of a few hundred candidates sit
close together (0.54-0.77 for "scary zombie movies" on MovieLens), so over all of them a
user's taste would outweigh the query, and a horror fan who has seen every zombie film
would be offered "Ghost World" for it.

Within the head: score = query_score * ((1 - w) + w * cf_norm), where query_score is the
cosine between query and item text and cf_norm is the user's CF score min-max normalised
over the head to [0, 1] (all 1 when they tie). Min-max puts the CF part on a fixed scale
whatever the range of the model's logits. The product, rather than a weighted sum, scales an
item's relevance by a factor between 1 - w and 1, so the user's taste re-orders close matches
but cannot lift a clearly weaker match far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.assets import SearchAssets


@dataclass(frozen=True)
class Ranked:
    """A ranked answer: index rows and the parts of their scores, best first.

    `cf` is None when no CF part was used (no user, or a user the model does not know).
    """

    rows: np.ndarray
    query: np.ndarray
    cf: np.ndarray | None
    score: np.ndarray


def candidates(
    assets: SearchAssets, vector: np.ndarray, k: int, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return up to k nearest rows to `vector` and their cosines, rows in `drop` removed."""
    width = min(len(assets.index), k + len(drop))
    rows, scores = assets.index.search(vector, width)
    keep = rows >= 0
    if len(drop):
        keep &= ~np.isin(rows, drop)
    return rows[keep][:k], scores[keep][:k]


def blend(
    rows: np.ndarray,
    query: np.ndarray,
    cf_raw: np.ndarray | None,
    weight: float,
    n: int,
    margin: float = np.inf,
) -> Ranked:
    """Order the head of the candidates by the blended score (see the module docstring);
    keep the best n.

    The candidates arrive by query score descending; ties keep that (semantic) order.
    """
    if cf_raw is None or len(rows) == 0:
        return Ranked(rows[:n], query[:n], None, query[:n])
    within = int(np.searchsorted(-query, margin - query[0], side="right"))
    head = max(n, within)
    rows, query, cf_raw = rows[:head], query[:head], cf_raw[:head]
    low, high = float(cf_raw.min()), float(cf_raw.max())
    spread = high - low
    cf = (cf_raw - low) / spread if spread > 1e-12 else np.ones_like(cf_raw)
    score = query * ((1.0 - weight) + weight * cf)
    order = np.argsort(-score, kind="stable")[:n]
    return Ranked(rows[order], query[order], cf[order], score[order])


def search(
    assets: SearchAssets,
    vector: np.ndarray,
    n: int,
    candidate_count: int,
    weight: float,
    user_key: str | None = None,
    margin: float = np.inf,
) -> Ranked:
    """Rank items for a query vector, re-ranked and filtered for a user when one is given."""
    user_vec = None if user_key is None else assets.user_vector(user_key)
    seen = assets.seen_rows(user_key) if user_key is not None else np.zeros(0, dtype=np.int64)
    rows, query = candidates(assets, vector, max(n, candidate_count), seen)
    cf_raw = None if user_vec is None else assets.item_cf[rows] @ user_vec
    return blend(rows, query, cf_raw, weight, n, margin)


def history_vector(assets: SearchAssets, rows: np.ndarray) -> np.ndarray:
    """Return the L2-normalised mean text embedding of the given index rows."""
    mean = assets.index.embeddings[rows].mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)
