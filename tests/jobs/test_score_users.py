"""The score_users stage's batch maths (Arrow in, Arrow out), without a SparkSession."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from jobs.score_users import Catalogue, _catalogue, score_batch
from jobs.topn import prepare_items
from tests.jobs.test_topn import brute_force


def users_batch(user_ids, factors, seen) -> pa.RecordBatch:
    """Return a batch laid out as Spark hands it to mapInArrow (list columns, null seen)."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array(user_ids),
            pa.array([list(map(float, row)) for row in factors], pa.list_(pa.float32())),
            pa.array(seen, pa.list_(pa.string())),
        ],
        names=["user_id", "factors", "seen"],
    )


@pytest.fixture
def case():
    rng = np.random.default_rng(7)
    users = rng.standard_normal((9, 8)).astype(np.float32)
    items = rng.standard_normal((40, 8)).astype(np.float32)
    item_ids = np.array([f"i{j:03d}" for j in range(40)], dtype=object)
    seen_idx = [sorted(rng.choice(40, int(rng.integers(0, 12)), replace=False)) for _ in users]
    seen_idx[3] = []
    seen = [[item_ids[j] for j in row] for row in seen_idx]
    seen[3] = None  # a user with no interactions comes out of the left join as null
    return users, items, item_ids, seen_idx, seen


def test_batch_matches_brute_force_with_string_ids_null_seen_and_a_sliced_batch(case):
    users, items, item_ids, seen_idx, seen = case
    catalogue = Catalogue(pa.array(item_ids), prepare_items(items, 5))
    user_ids = [f"u{u}" for u in range(len(users))]
    whole = users_batch(user_ids, users, seen)
    scores, expected = brute_force(users, items, [set(s) for s in seen_idx], 5)
    for lo, hi in ((0, 9), (2, 7)):  # a slice keeps its parent's offsets and buffers
        out = score_batch(whole.slice(lo, hi - lo), catalogue, 5)
        assert out.schema.names == ["user_id", "item_id", "rank", "score"]
        rows = out.to_pylist()
        assert len(rows) == 5 * (hi - lo)
        for u in range(lo, hi):
            mine = [r for r in rows if r["user_id"] == f"u{u}"]
            assert [r["rank"] for r in mine] == [1, 2, 3, 4, 5]
            assert [r["item_id"] for r in mine] == [item_ids[j] for j in expected[u]]
            assert np.array_equal([r["score"] for r in mine], scores[u, expected[u]])


def test_a_seen_item_without_factors_is_named_with_its_user(case):
    users, items, item_ids, _, seen = case
    catalogue = Catalogue(pa.array(item_ids), prepare_items(items, 5))
    seen[4] = ["i001", "gone"]
    user_ids = [f"u{u}" for u in range(len(users))]
    with pytest.raises(ValueError, match="user 'u4' has seen item 'gone', which has no item"):
        score_batch(users_batch(user_ids, users, seen), catalogue, 5)


def test_factors_of_the_wrong_width_are_named_with_their_user(case):
    users, items, item_ids, _, seen = case
    catalogue = Catalogue(pa.array(item_ids), prepare_items(items, 5))
    rows = [list(r) for r in users]
    rows[6] = rows[6][:5]
    batch = users_batch([f"u{u}" for u in range(len(users))], rows, seen)
    with pytest.raises(ValueError, match="user 'u6' has 5 factors, the items have 8"):
        score_batch(batch, catalogue, 5)


def test_the_item_side_is_prepared_once_per_broadcast_value_and_list_length(case):
    _, items, item_ids, _, _ = case
    first = SimpleNamespace(value=(item_ids, items))  # a worker's Broadcast: .value is stable
    prepared = _catalogue(first, 5)
    assert _catalogue(first, 5) is prepared
    assert _catalogue(first, 6) is not prepared
    assert _catalogue(SimpleNamespace(value=(item_ids, items.copy())), 6) is not prepared
