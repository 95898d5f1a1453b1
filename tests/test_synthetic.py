"""The seeded MovieLens-shaped generator the scoring benchmark and kernel tests share."""

from __future__ import annotations

import numpy as np

from benchmarks.synthetic import Shape, generate


def test_shape_bounds_and_seed():
    shape = Shape(users=2000, items=3000, interactions=2000 * 40, dim=16, min_seen=20)

    data = generate(shape)
    again = generate(shape)

    counts = np.diff(data.seen_indptr)
    assert data.user_vecs.shape == (2000, 16) and data.item_vecs.shape == (3000, 16)
    assert data.user_vecs.dtype == np.float32 and data.item_vecs.dtype == np.float32
    assert counts.min() >= 20 and counts.max() > 10 * np.median(counts)  # long-tailed activity
    assert 0.9 * shape.interactions <= counts.sum() <= shape.interactions
    for u in (0, 1, int(np.argmax(counts))):  # distinct items, ascending, in range
        row = data.seen_indices[data.seen_indptr[u] : data.seen_indptr[u + 1]]
        assert (np.diff(row) > 0).all() and row.min() >= 0 and row.max() < 3000
    popularity = np.sort(np.bincount(data.seen_indices, minlength=3000))[::-1]
    assert popularity[:30].sum() > 10 * popularity[-300:].sum()  # long-tailed popularity
    assert np.array_equal(data.seen_indices, again.seen_indices)
    assert np.array_equal(data.user_vecs, again.user_vecs)


def test_ties_give_small_integer_factors():
    data = generate(Shape(users=50, items=80, interactions=50 * 25, dim=4), ties=True)

    assert set(np.unique(data.item_vecs).tolist()) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
