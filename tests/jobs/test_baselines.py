"""Known-answer tests of the baselines, each ranked through the masked full-catalogue kernel."""

from __future__ import annotations

import numpy as np
import pytest

from jobs import baselines
from jobs.topn import top_n_unseen


def checkerboard(size: int = 8):
    """Even users liked even items, odd users odd items, the diagonal withheld."""
    pairs = [(u, i) for u in range(size) for i in range(size) if u % 2 == i % 2 and u != i]
    users, items = (np.array(column) for column in zip(*pairs, strict=True))
    return baselines.binary_matrix(users, items, size, size)


def top1(x, factors) -> list[int]:
    users, items = factors
    top = top_n_unseen(users, items, x.indptr.astype(np.int64), x.indices.astype(np.int64), 1)
    return top.indices[:, 0].tolist()


def test_binary_matrix_counts_a_repeat_once():
    x = baselines.binary_matrix(np.array([0, 0, 1]), np.array([2, 2, 0]), 2, 3)
    assert x.toarray().tolist() == [[0, 0, 1], [1, 0, 0]]


def test_popularity_ranks_by_users_per_item():
    x = baselines.binary_matrix(np.array([0, 1, 1, 2]), np.array([2, 2, 0, 2]), 4, 3)
    users, items = baselines.popularity(x)
    assert (users @ items.T)[3].tolist() == [1.0, 0.0, 3.0]


def test_item_knn_scores_are_summed_cosines_without_self_similarity():
    x = baselines.binary_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 3)
    users, items = baselines.item_knn(x)
    # cos(0, 1) = 1 / sqrt(1 * 2); item 2 has no users.
    assert items[0, 1] == pytest.approx(1 / np.sqrt(2))
    assert np.diag(items).tolist() == [0.0, 0.0, 0.0]
    assert (users @ items.T)[1] == pytest.approx([1 / np.sqrt(2), 0.0, 0.0])


@pytest.mark.parametrize("name", ["item_knn", "ease", "implicit_als"])
def test_each_baseline_finds_the_withheld_diagonal(name):
    x = checkerboard()
    train = {
        "item_knn": lambda: baselines.item_knn(x),
        "ease": lambda: baselines.ease(x, 1.0),
        "implicit_als": lambda: baselines.implicit_als(x, factors=2, reg=0.01, iters=30),
    }[name]
    assert top1(x, train()) == list(range(8))


def test_ease_closed_form_matches_its_definition():
    x = checkerboard(4)
    users, items = baselines.ease(x, 2.0)
    gram = (x.T @ x).toarray() + 2.0 * np.eye(4)
    p = np.linalg.inv(gram)
    b = np.eye(4) - p / np.diag(p)
    assert items.T == pytest.approx(b, abs=1e-5)
    assert users.tolist() == x.toarray().tolist()


def test_choose_ease_lambda_takes_the_best_validation_score():
    x = checkerboard(4)
    lam, scores = baselines.choose_ease_lambda(lambda f: -abs(f[1][0, 2] - 0.3), x, (1.0, 10.0))
    assert set(scores) == {1.0, 10.0}
    assert lam == max(scores, key=scores.get)


def test_spark_als_finds_the_withheld_diagonal(spark):
    x = checkerboard()
    factors = baselines.spark_als(spark, x, rank=2, reg=0.01, iters=15)
    assert factors[0].shape == (8, 2) and factors[1].shape == (8, 2)
    assert top1(x, factors) == list(range(8))
