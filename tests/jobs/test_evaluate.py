"""Known-answer tests of the holdout split, the ranking metrics and the popularity baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs import evaluate
from jobs.topn import seen_csr


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Build CSR arrays from a list of item lists, one per user."""
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return indptr, indices


def _metrics(top: list[list[int]], relevant: list[list[int]], k: int) -> dict:
    return evaluate.ranking_metrics(np.array(top), *_csr(relevant), k)


def test_holdout_split_takes_the_last_k_by_time_per_user():
    user = np.array([0, 1, 0, 0, 1, 0, 0, 2, 2, 2])
    time = np.array([5, 9, 1, 3, 8, 2, 4, 7, 7, 7])
    mask = evaluate.holdout_split(user, time, k=2, min_train=1)
    # User 0: times 5 and 4 are the latest. User 1 has 2 < k + min_train, so keeps both.
    # User 2: all tied, so the last two positions go.
    assert mask.tolist() == [True, False, False, False, False, False, True, False, True, True]


def test_holdout_split_min_train_excludes_short_histories():
    user = np.array([0, 0, 0, 1, 1, 1, 1])
    time = np.arange(7)
    mask = evaluate.holdout_split(user, time, k=1, min_train=3)
    assert mask.tolist() == [False, False, False, False, False, False, True]


def test_holdout_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        evaluate.holdout_split(np.zeros(3), np.zeros(2), k=1)


def test_metrics_hits_at_ranks_one_and_three():
    m = _metrics([[10, 11, 12, 13, 14]], [[10, 12, 99]], k=5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["users"] == 1
    assert m["precision"] == pytest.approx(2 / 5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["ndcg"] == pytest.approx(1.5 / idcg)
    assert m["ndcg"] == pytest.approx(0.703918, abs=1e-6)
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_recall_denominator_is_min_of_k_and_relevant_count():
    m = _metrics([[1, 2]], [[1, 2, 3, 4, 5]], k=2)
    assert (m["precision"], m["recall"], m["ndcg"], m["map"]) == pytest.approx((1, 1, 1, 1))


def test_padding_is_never_a_hit_and_short_lists_count_as_misses():
    padded = _metrics([[5, -1, -1]], [[5, 7]], k=3)
    short = _metrics([[5]], [[5, 7]], k=3)
    for m in (padded, short):
        assert m["precision"] == pytest.approx(1 / 3)
        assert m["recall"] == pytest.approx(1 / 2)
        assert m["ndcg"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
        assert m["map"] == pytest.approx(1 / 2)


def test_users_without_relevant_items_are_not_averaged():
    m = _metrics([[1, 2], [3, 4], [5, 6]], [[2], [], [9]], k=2)
    assert m["users"] == 2
    assert m["recall"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3)) / 2)
    assert m["map"] == pytest.approx(0.25)


def test_duplicate_relevant_items_count_once():
    m = _metrics([[3, 4]], [[3, 3, 3]], k=2)
    assert (m["recall"], m["ndcg"], m["map"]) == pytest.approx((1, 1, 1))


def test_metrics_are_zero_when_nobody_has_relevant_items():
    m = _metrics([[1, 2]], [[]], k=2)
    assert m == {"k": 2, "users": 0, "precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}


def _reference(top: np.ndarray, relevant: list[set], k: int) -> dict:
    """Compute the metrics one user at a time, straight from their definitions."""
    sums = dict.fromkeys(("precision", "recall", "ndcg", "map"), 0.0)
    users = 0
    for row, rel in zip(top, relevant, strict=True):
        if not rel:
            continue
        users += 1
        denom = min(k, len(rel))
        hits = [int(i in rel) for i in row[:k]]
        sums["precision"] += sum(hits) / k
        sums["recall"] += sum(hits) / denom
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        sums["ndcg"] += dcg / sum(1 / math.log2(r + 2) for r in range(denom))
        ap = sum(sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h)
        sums["map"] += ap / denom
    return {name: total / users for name, total in sums.items()}


def test_metrics_match_a_per_user_reference():
    rng = np.random.default_rng(0)
    top = np.stack([rng.permutation(30)[:10] for _ in range(50)])
    relevant = [set(rng.choice(30, size=rng.integers(0, 12), replace=False)) for _ in range(50)]
    m = evaluate.ranking_metrics(top, *_csr([sorted(r) for r in relevant]), k=10)
    expected = _reference(top, relevant, 10)
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12), name


def test_relevant_csr_keeps_ratings_at_or_above_the_threshold():
    indptr, indices = evaluate.relevant_csr(
        np.array([0, 0, 1, 1]), np.array([5, 6, 7, 8]), np.array([4.0, 3.5, 5.0, 4.5]), 3
    )
    assert indptr.tolist() == [0, 1, 3, 3]
    assert indices.tolist() == [5, 7, 8]


def test_popularity_scores_count_interactions():
    scores = evaluate.popularity_scores(np.array([2, 0, 2, 2, 3]), n_items=5)
    assert scores.dtype == np.float32
    assert scores.tolist() == [1, 0, 3, 1, 0]


def test_popularity_top_n_masks_seen_items_and_breaks_ties_by_index():
    item_idx = np.array([2, 0, 2, 2, 3, 1])
    seen = seen_csr(np.array([0]), np.array([2]), n_users=2)
    top = evaluate.popularity_top_n(item_idx, 5, *seen, n=3)
    assert top.indices.tolist() == [[0, 1, 3], [2, 0, 1]]


def test_evaluate_model_ranks_unseen_items_for_users_with_relevant_items():
    users = np.ones((3, 1), dtype=np.float32)
    items = np.array([[4.0], [3.0], [2.0], [1.0]], dtype=np.float32)
    train = _csr([[0], [], [1]])
    relevant = _csr([[2], [], [0, 3]])
    m = evaluate.evaluate_model(users, items, train, relevant, k=2)
    # User 0 gets [1, 2]: a hit at rank 2. User 2 gets [0, 2]: a hit at rank 1 of 2 relevant.
    assert m["users"] == 2
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx((1 + 0.5) / 2)
    ndcg_user2 = 1 / (1 + 1 / math.log2(3))
    assert m["ndcg"] == pytest.approx((1 / math.log2(3) + ndcg_user2) / 2)
    assert m["map"] == pytest.approx((0.5 + 0.5) / 2)


def test_evaluate_model_rejects_csr_of_the_wrong_size():
    users = np.ones((3, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="train CSR"):
        evaluate.evaluate_model(users, users, _csr([[0]]), _csr([[], [], []]), k=1)


def test_list_metrics_coverage_novelty_and_diversity_by_hand():
    # Items 0..3; item 0 seen by 4 of 4 users, item 1 by 2, item 2 by 1, item 3 by none.
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    stats = evaluate.ItemStats(np.array([4, 2, 1, 0]), n_users=4, embeddings=embeddings)
    top = np.array([[0, 1], [2, 0], [3, -1]])

    m = evaluate.list_metrics(top, stats)

    assert m["coverage"] == pytest.approx(4 / 4)
    # Self-information: item 0 -> 0 bits, item 1 -> 1, item 2 -> 2, item 3 counts as 1 user -> 2.
    assert m["novelty"] == pytest.approx((0 + 1 + 2 + 0 + 2) / 5)
    # Pairs: (0, 1) cosine 0 -> distance 1; (2, 0) cosine 1 -> distance 0; [3] has no pair.
    assert m["diversity"] == pytest.approx(0.5)


def test_list_metrics_without_embeddings_report_zero_diversity():
    stats = evaluate.ItemStats(np.array([1, 1, 1, 1]), n_users=1)
    m = evaluate.list_metrics(np.array([[0, 1]]), stats)
    assert m == {"coverage": 0.5, "novelty": 0.0, "diversity": 0.0}


def test_coverage_by_decile_counts_listed_items_per_popularity_decile():
    # 20 items, item i seen by i users: decile d holds items 2d and 2d + 1.
    counts = np.arange(20)
    deciles = evaluate.coverage_by_decile(np.array([[19, 18, 0], [1, 5, -1]]), counts)
    assert deciles == [1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_evaluate_model_adds_list_metrics_when_given_item_stats():
    users = np.ones((1, 1), dtype=np.float32)
    items = np.array([[3.0], [2.0], [1.0]], dtype=np.float32)
    stats = evaluate.ItemStats(np.array([1, 1, 2]), n_users=2)
    m = evaluate.evaluate_model(users, items, _csr([[0]]), _csr([[2]]), k=2, stats=stats)
    # The list is [1, 2]: a hit at rank 2; both items are listed, item 0 is not.
    assert m["ndcg"] == pytest.approx(1 / math.log2(3))
    assert m["coverage"] == pytest.approx(2 / 3)
    assert m["novelty"] == pytest.approx((1 + 0) / 2)
