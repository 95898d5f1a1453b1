"""Our model and the baselines on one temporal holdout split, by the same code, in one run.

Used by the job's `evaluate` stage (our model and the baselines its settings name) and by
`nightrec eval` (every baseline). Plain numpy apart from Spark's ALS, which needs a session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from jobs import baselines
from jobs.evaluate import (
    CSR,
    ItemStats,
    coverage_by_decile,
    evaluate_model,
    holdout_split,
    list_metrics,
    rank_model,
    ranking_metrics,
    relevant_csr,
)
from jobs.topn import seen_csr

BASELINES = ("popularity", "item_knn", "ease", "implicit_als", "spark_als")
MODEL = "model"
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Split:
    """A temporal holdout: training and test rows of the data, and what ranking needs.

    Attributes:
        train: indices of the training interactions.
        test: indices of the held-out interactions.
        seen: CSR of each user's training items (masked from the lists).
        relevant: CSR of each user's relevant held-out items.
        x: binary user x item matrix of the training interactions.
        holdout: interactions held out per user (users with enough of them).
    """

    train: np.ndarray
    test: np.ndarray
    seen: CSR
    relevant: CSR
    x: sparse.csr_matrix
    holdout: int


def make_split(data, holdout: int, min_rating: float, rows: np.ndarray | None = None) -> Split:
    """Hold out each user's last `holdout` interactions among `rows` (all by default).

    Passing a split's training rows carves a validation split out of its training data.
    """
    rows = np.arange(len(data.user_idx)) if rows is None else rows
    test_mask = holdout_split(data.user_idx[rows], data.timestamp[rows], holdout)
    train, test = rows[~test_mask], rows[test_mask]
    u, i = data.user_idx, data.item_idx
    return Split(
        train=train,
        test=test,
        seen=seen_csr(u[train], i[train], data.n_users),
        relevant=relevant_csr(u[test], i[test], data.rating[test], data.n_users, min_rating),
        x=baselines.binary_matrix(u[train], i[train], data.n_users, data.n_items),
        holdout=holdout,
    )


def item_stats(split: Split, embeddings: np.ndarray | None) -> ItemStats:
    """Return the item statistics of the split's training data."""
    active_users = int((np.diff(split.x.indptr) > 0).sum())
    per_item = np.asarray(split.x.sum(axis=0)).ravel()
    return ItemStats(per_item, active_users, embeddings)


def train_baseline(name: str, data, split: Split, k: int, min_rating: float, spark=None):
    """Return (user_vecs, item_vecs, params) of one baseline trained on the split."""
    if name == "popularity":
        return (*baselines.popularity(split.x), {})
    if name == "item_knn":
        return (*baselines.item_knn(split.x), {})
    if name == "implicit_als":
        return (*baselines.implicit_als(split.x), {})
    if name == "spark_als":
        if spark is None:
            raise ValueError("the spark_als baseline needs a SparkSession")
        return (*baselines.spark_als(spark, split.x), {})
    if name == "ease":
        lam, scores = ease_lambda(data, split, k, min_rating)
        return (*baselines.ease(split.x, lam), {"lambda": lam, "validation_ndcg": scores})
    raise ValueError(f"unknown baseline {name!r} (baselines: {', '.join(BASELINES)})")


def ease_lambda(data, split: Split, k: int, min_rating: float) -> tuple[float, dict]:
    """Choose EASE's lambda on a validation split carved from the split's training rows."""
    val = make_split(data, split.holdout, min_rating, rows=split.train)

    def score(factors) -> float:
        return evaluate_model(*factors, val.seen, val.relevant, k)["ndcg"]

    lam, scores = baselines.choose_ease_lambda(score, val.x)
    return lam, {str(key): round(value, 5) for key, value in scores.items()}


def run_suite(
    data,
    split: Split,
    k: int,
    min_rating: float,
    fit_model: Callable[[np.ndarray], Any],
    names: Sequence[str] = ("popularity",),
    spark=None,
    embeddings: np.ndarray | None = None,
) -> dict:
    """Score our model and the named baselines on the split.

    Args:
        data: the run's `Interactions`.
        split: the holdout split.
        k: list length and cut-off.
        min_rating: lowest relevant rating (EASE's validation split uses it too).
        fit_model: trains our model on the given rows, returning `CFFactors`.
        names: baselines to run, in order.
        spark: a SparkSession, needed by "spark_als" only.
        embeddings: (n_items, d) L2-normalised text embeddings, for diversity.

    Returns:
        {"results": {name: metrics}, "seconds": {name: s}, "params": {name: {...}},
        "coverage_by_decile": [...], "score_histogram": {"edges", "counts"}}, "model" being ours.
    """
    stats = item_stats(split, embeddings)
    out: dict[str, Any] = {"results": {}, "seconds": {}, "params": {}}
    for name in (MODEL, *names):
        start = time.perf_counter()
        if name == MODEL:
            model = fit_model(split.train)
            users, items, params = model.user_factors, model.item_factors, {}
        else:
            users, items, params = train_baseline(name, data, split, k, min_rating, spark)
        top, rel = rank_model(users, items, split.seen, split.relevant, k)
        out["results"][name] = {
            **ranking_metrics(top.indices, *rel, k),
            **list_metrics(top.indices, stats),
        }
        out["seconds"][name] = round(time.perf_counter() - start, 2)
        out["params"][name] = params
        if name == MODEL:
            out["coverage_by_decile"] = coverage_by_decile(top.indices, stats.users_per_item)
            out["score_histogram"] = _histogram(top.scores)
    return out


def _histogram(scores: np.ndarray) -> dict:
    """Return a histogram of the finite scores as JSON-ready lists."""
    finite = scores[np.isfinite(scores)]
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS) if finite.size else ([], [])
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def best_baseline(results: dict, metric: str = "ndcg") -> tuple[str, float] | None:
    """Return the baseline with the highest metric, or None when none ran."""
    scored = [(name, m[metric]) for name, m in results.items() if name != MODEL]
    return max(scored, key=lambda pair: pair[1]) if scored else None
