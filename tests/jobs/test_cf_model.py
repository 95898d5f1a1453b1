"""Tests of the Keras CF model: known answers, reproducibility, and quality on MovieLens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs import cf_model, evaluate
from jobs.cf_model import CFParams, train_cf
from jobs.topn import seen_csr, top_n_unseen

RATINGS = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small" / "ratings.csv"
# Few users make one step an epoch, so the checkerboard needs more epochs and a bigger step.
SMALL = CFParams(dim=4, epochs=100, learning_rate=0.05, l2=0.1)


def _checkerboard(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Even users like even items, odd users odd items; user i has not seen item i."""
    users, items = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = (users % 2 == items % 2) & (users != items)
    return users[keep], items[keep]


def test_checkerboard_top_unseen_item_of_user_i_is_i():
    n = 16
    users, items = _checkerboard(n)
    factors = train_cf(users, items, None, n, n, SMALL)
    top = top_n_unseen(factors.user_factors, factors.item_factors, *seen_csr(users, items, n), 2)
    # The only unseen item of the user's parity is the withheld diagonal one.
    assert top.indices[:, 0].tolist() == list(range(n))
    assert (top.indices[:, 1] % 2 != np.arange(n) % 2).all()


def test_factors_fold_the_item_bias_into_a_dot_product():
    users, items = _checkerboard(8)
    # User 8 has no interactions, so it scores items by their bias alone.
    factors = train_cf(users, items, None, 9, 8, CFParams(dim=3, epochs=2))
    assert factors.user_factors.shape == (9, 4)
    assert factors.item_factors.shape == (8, 4)
    assert factors.user_factors.dtype == factors.item_factors.dtype == np.float32
    assert (factors.user_factors[:, -1] == 1).all()
    assert (factors.user_factors[8] == [0, 0, 0, 1]).all()
    assert len(factors.history["loss"]) == 2
    assert factors.history["seconds"] > 0


def test_training_lowers_the_loss():
    users, items = _checkerboard(16)
    loss = train_cf(users, items, None, 16, 16, SMALL).history["loss"]
    assert loss[-1] < 0.8 * loss[0]


def test_same_seed_gives_the_same_factors():
    users, items = _checkerboard(12)
    rating = np.where(users % 3 == 0, 5.0, 3.0)
    params = CFParams(dim=8, epochs=5, batch_users=5)
    first = train_cf(users, items, rating, 12, 12, params)
    second = train_cf(users, items, rating, 12, 12, params)
    other = train_cf(users, items, rating, 12, 12, CFParams(dim=8, epochs=5, batch_users=5, seed=7))
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    assert first.history["loss"] == second.history["loss"]
    assert not np.array_equal(first.item_factors, other.item_factors)


def test_rating_weights_need_positive_ratings():
    with pytest.raises(ValueError, match="positive ratings"):
        train_cf(np.array([0, 1]), np.array([0, 1]), np.array([4.0, 0.0]), 2, 2)
    # Without rating weighting the ratings are not used, so zeros are fine.
    train_cf(
        np.array([0, 1]), np.array([0, 1]), np.array([4.0, 0.0]), 2, 2, CFParams(rating_weight=0)
    )


def test_indices_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"item_idx must lie in \[0, 2\)"):
        train_cf(np.array([0, 1]), np.array([0, 2]), None, 2, 2)


def test_thread_cap_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        cf_model.set_tf_threads(0)


def test_params_are_validated_and_serialisable():
    with pytest.raises(ValueError, match="CFParams.epochs"):
        CFParams(epochs=0).validate()
    assert CFParams(dim=8).to_dict()["dim"] == 8


def _movielens_split():
    """Map ids to indices and hold out each user's last 10 ratings (relevant: >= 4.0)."""
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(RATINGS)
    _, users = np.unique(frame["userId"].to_numpy(), return_inverse=True)
    _, items = np.unique(frame["movieId"].to_numpy(), return_inverse=True)
    rating = frame["rating"].to_numpy()
    n_users, n_items = users.max() + 1, items.max() + 1
    test = evaluate.holdout_split(users, frame["timestamp"].to_numpy(), k=10, min_train=10)
    train = ~test
    return (
        (users[train], items[train], rating[train], n_users, n_items),
        seen_csr(users[train], items[train], n_users),
        evaluate.relevant_csr(users[test], items[test], rating[test], n_users, threshold=4.0),
    )


@pytest.mark.slow
def test_model_beats_popularity_on_a_movielens_temporal_holdout():
    data, train, relevant = _movielens_split()
    factors = train_cf(*data)
    model = evaluate.evaluate_model(factors.user_factors, factors.item_factors, train, relevant, 10)
    popular = evaluate.popularity_factors(data[1], data[3], data[4])
    baseline = evaluate.evaluate_model(*popular, train, relevant, 10)
    print(
        f"\ntrained in {factors.history['seconds']:.1f} s on {model['users']} users: "
        f"model ndcg@10={model['ndcg']:.4f} recall@10={model['recall']:.4f}; "
        f"popularity ndcg@10={baseline['ndcg']:.4f} recall@10={baseline['recall']:.4f}"
    )
    assert model["users"] == baseline["users"] > 500
    assert model["ndcg"] > baseline["ndcg"]
    assert model["recall"] > baseline["recall"]


def test_recency_weights_halve_per_half_life_of_later_interactions():
    user = np.array([0, 0, 1, 0, 1])
    time = np.array([30, 10, 5, 20, 5])  # user 1's tie goes to the later position
    weights = cf_model.recency_weights(user, time, half_life=1.0)
    assert weights.tolist() == [1.0, 0.25, 0.5, 0.5, 1.0]


def test_recency_weighting_changes_training_only_when_asked():
    users, items = _checkerboard(8)
    time = np.arange(len(users))
    plain = train_cf(users, items, None, 8, 8, SMALL, timestamp=time)
    base = train_cf(users, items, None, 8, 8, SMALL)
    recent = train_cf(
        users, items, None, 8, 8, CFParams(**{**SMALL.to_dict(), "recency_half_life": 2.0}), time
    )
    assert np.array_equal(plain.item_factors, base.item_factors)
    assert not np.allclose(recent.item_factors, base.item_factors)


def test_item_text_reaches_items_without_interactions():
    # Items 0..3 share a text with items 4..7 (same parity, same text); items 4..7 have no
    # interactions, so only the text can rank them for the users who like their parity.
    n_users, n_items = 8, 8
    users, items = _checkerboard(4)
    text = np.array([[1.0, 0.0] if i % 2 == 0 else [0.0, 1.0] for i in range(n_items)])
    params = CFParams(**{**SMALL.to_dict(), "text_weight": 1.0})
    factors = train_cf(users, items, None, n_users, n_items, params, item_text=text)
    scores = factors.user_factors[:4] @ factors.item_factors.T
    # Among the unseen items 4..7, the two of each user's parity come first.
    for user in range(4):
        ranked = 4 + np.argsort(-scores[user, 4:], kind="stable")
        assert (ranked[:2] % 2 == user % 2).all(), (user, ranked)


def test_item_text_of_the_wrong_shape_is_refused_with_the_sizes():
    users, items = _checkerboard(4)
    with pytest.raises(ValueError, match=r"one row per item \(4\), got \(3, 2\)"):
        train_cf(users, items, None, 4, 4, CFParams(epochs=1), item_text=np.zeros((3, 2)))
