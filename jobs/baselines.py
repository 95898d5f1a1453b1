"""Baseline recommenders, each trained on the same training split as our model.

Every baseline returns (user_vecs, item_vecs) whose dot products score items, so they all
rank the full catalogue through the same masked kernel (`jobs.topn.top_n_unseen`):

- popularity: [1] . [count_i]
- item-kNN (cosine): user_vecs = X, item_vecs = S with S the item-item cosine matrix, its
  diagonal zeroed, so score(u, i) = sum over u's items j of cos(i, j)
- EASE (Steck 2019): B = I - P / diag(P), P = (X'X + lambda I)^-1; user_vecs = X,
  item_vecs = B' (the item-item matrices are dense: n_items^2 floats, fine to ~20k items)
- implicit's ALS and Spark MLlib's ALS (implicitPrefs): their own user and item factors.
  Spark's ALS cannot exclude seen items; ranking its factors through the masked kernel is
  the same as filtering its lists afterwards, without a lost slot per seen item.

X is the binary user x item matrix of the training interactions (a repeat counts once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse

from jobs.evaluate import popularity_factors

Factors = tuple[np.ndarray, np.ndarray]
# Four times apart: each inversion costs seconds to a minute, so the grid stays short.
EASE_LAMBDAS = (50.0, 200.0, 800.0)


def binary_matrix(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int):
    """Return the binary (n_users, n_items) CSR matrix of the interactions, float32."""
    ones = np.ones(len(user_idx), dtype=np.float32)
    x = sparse.csr_matrix((ones, (user_idx, item_idx)), shape=(n_users, n_items))
    x.data[:] = 1.0  # duplicates were summed
    return x


def popularity(x: sparse.csr_matrix) -> Factors:
    """Rank items by how many users have them."""
    rows, cols = x.nonzero()
    return popularity_factors(cols, x.shape[0], x.shape[1])


def item_knn(x: sparse.csr_matrix) -> Factors:
    """Score items by the summed cosine similarity to the user's items."""
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    xn = x.multiply(1.0 / norms).tocsc()
    sim = (xn.T @ xn).toarray().astype(np.float32)
    np.fill_diagonal(sim, 0.0)
    return x.toarray(), sim  # sim is symmetric: item_vecs = sim' = sim


def ease(x: sparse.csr_matrix, lam: float) -> Factors:
    """Return EASE's scores as factors for one regularisation value lambda."""
    # float32 halves the inversion's time; the rankings matched float64's on MovieLens.
    gram = (x.T @ x).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return x.toarray(), np.ascontiguousarray(b.T, dtype=np.float32)


def choose_ease_lambda(
    score: Callable[[Factors], float], x: sparse.csr_matrix, lambdas: Sequence[float] = EASE_LAMBDAS
) -> tuple[float, dict[float, float]]:
    """Return the lambda with the best validation score, and every lambda's score.

    Args:
        score: maps EASE's factors (trained on the validation split's training part) to the
            validation metric; never the test split.
        x: the validation split's training matrix.
        lambdas: candidates.
    """
    scores = {lam: score(ease(x, lam)) for lam in lambdas}
    return max(scores, key=lambda lam: (scores[lam], -lam)), scores


def implicit_als(
    x: sparse.csr_matrix, factors: int = 64, reg: float = 0.05, iters: int = 15, alpha: float = 1.0
) -> Factors:
    """Train implicit's conjugate-gradient ALS (Hu, Koren, Volinsky 2008) on X."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    # implicit parallelises over users itself; BLAS threads inside that only oversubscribe
    # (it checks, and warns, when the model is built).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=reg,
            alpha=alpha,
            iterations=iters,
            random_state=42,
            num_threads=0,
        )
        model.fit(x.tocsr(), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def spark_als(
    spark, x: sparse.csr_matrix, rank: int = 64, reg: float = 0.05, iters: int = 10
) -> Factors:
    """Train Spark MLlib's ALS with implicitPrefs on X; return its factors by index."""
    import pandas as pd
    from pyspark.ml.recommendation import ALS

    coo = x.tocoo()
    frame = pd.DataFrame({"user": coo.row, "item": coo.col, "rating": coo.data.astype(float)})
    df = spark.createDataFrame(frame, "user int, item int, rating double")
    model = ALS(
        rank=rank,
        maxIter=iters,
        regParam=reg,
        implicitPrefs=True,
        alpha=1.0,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        seed=42,
        coldStartStrategy="drop",
    ).fit(df)
    users = _dense(model.userFactors.toPandas(), x.shape[0], rank)
    items = _dense(model.itemFactors.toPandas(), x.shape[1], rank)
    return users, items


def _dense(frame, n: int, rank: int) -> np.ndarray:
    """Return Spark's (id, features) rows as an (n, rank) array; absent ids stay zero."""
    out = np.zeros((n, rank), dtype=np.float32)
    if len(frame):
        out[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy())
    return out
