"""The exact top-N kernel against a brute-force reference (ties broken by item index)."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.topn import seen_csr, top_n_unseen


def brute_force(users, items, seen: list[set], n):
    """Sort every item of every user by (-score, index), drop seen ones, keep n."""
    scores = users.astype(np.float32) @ items.astype(np.float32).T
    lists = []
    for u, row in enumerate(scores):
        order = sorted((j for j in range(len(row)) if j not in seen[u]), key=lambda j: (-row[j], j))
        lists.append(order[:n])
    return scores, lists


def random_case(rng, n_users, n_items, dim, max_seen, integer=False):
    if integer:  # small integers make many exact ties
        users = rng.integers(-2, 3, (n_users, dim)).astype(np.float32)
        items = rng.integers(-2, 3, (n_items, dim)).astype(np.float32)
    else:
        users = rng.standard_normal((n_users, dim)).astype(np.float32)
        items = rng.standard_normal((n_items, dim)).astype(np.float32)
    seen = [
        set(rng.choice(n_items, rng.integers(0, max_seen + 1), replace=False).tolist())
        for _ in range(n_users)
    ]
    pairs = [(u, i) for u, s in enumerate(seen) for i in s]
    u_idx = np.array([p[0] for p in pairs], dtype=np.int64)
    i_idx = np.array([p[1] for p in pairs], dtype=np.int64)
    return users, items, seen, seen_csr(u_idx, i_idx, n_users)


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("block_bytes", [4 * 50, 64 * 2**20])
def test_matches_brute_force(integer, block_bytes):
    rng = np.random.default_rng(7)
    users, items, seen, (indptr, indices) = random_case(rng, 40, 50, 4, 45, integer)

    top = top_n_unseen(users, items, indptr, indices, 10, block_bytes=block_bytes)

    scores, expected = brute_force(users, items, seen, 10)
    for u in range(len(users)):
        got = top.indices[u, : top.counts[u]].tolist()
        assert got == expected[u]
        assert top.counts[u] == min(10, 50 - len(seen[u]))
        # GEMM rounding depends on the block's shape: scores agree to float32 precision.
        np.testing.assert_allclose(
            top.scores[u, : top.counts[u]], scores[u, expected[u]], rtol=1e-6, atol=1e-6
        )
        assert (top.indices[u, top.counts[u] :] == -1).all()


def test_all_ties_are_broken_by_item_index():
    users = np.ones((3, 2), dtype=np.float32)
    items = np.ones((20, 2), dtype=np.float32)
    indptr, indices = seen_csr(np.array([0, 0, 2]), np.array([0, 5, 1]), 3)

    top = top_n_unseen(users, items, indptr, indices, 4)

    assert top.indices.tolist() == [[1, 2, 3, 4], [0, 1, 2, 3], [0, 2, 3, 4]]


def test_user_with_fewer_unseen_items_than_n_gets_all_of_them():
    users = np.array([[1.0], [1.0]], dtype=np.float32)
    items = np.array([[3.0], [2.0], [1.0]], dtype=np.float32)
    indptr, indices = seen_csr(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 1]), 2)

    top = top_n_unseen(users, items, indptr, indices, 5)

    assert top.counts.tolist() == [0, 2]
    assert top.indices.tolist() == [[-1, -1, -1], [0, 2, -1]]


def test_duplicate_seen_entries_and_n_larger_than_catalogue():
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.array([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]], dtype=np.float32)
    indptr, indices = seen_csr(np.array([0, 0]), np.array([0, 0]), 1)

    top = top_n_unseen(users, items, indptr, indices, 10)

    assert top.indices.tolist() == [[1, 2, -1]] and top.counts.tolist() == [2]


def test_checkerboard_top_item_is_the_withheld_diagonal():
    size = 8
    parity = np.arange(size) % 2
    users = np.stack([parity == 0, parity == 1], axis=1).astype(np.float32)
    items = users.copy()
    pairs = [(u, i) for u in range(size) for i in range(size) if u % 2 == i % 2 and u != i]
    indptr, indices = seen_csr(*map(np.array, zip(*pairs, strict=True)), size)

    top = top_n_unseen(users, items, indptr, indices, 1)

    assert top.indices[:, 0].tolist() == list(range(size))


def test_rejects_factors_of_different_width():
    with pytest.raises(ValueError, match="same width"):
        top_n_unseen(np.ones((1, 3)), np.ones((2, 2)), np.array([0, 0]), np.array([]), 1)
