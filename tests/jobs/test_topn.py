"""The exact top-N kernel against a brute-force reference (ties broken by item index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.synthetic import Shape, generate
from jobs.topn import prepare_items, seen_csr, set_threads, top_n_unseen
from jobs.topn_exact import exact_scores, finish_rows
from jobs.topn_tiles import _base, finish_block, finish_block_f32

# Every filter runs on any CPU (bf16 products are slow without AVX512-BF16/AMX, not wrong);
# "torch" with bf16 is what a GPU runs.
FILTERS = [
    pytest.param(engine, dtype, id=f"{engine}-{name}")
    for engine in ("tiles", "torch")
    for name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32))
]


def brute_force(users, items, seen: list[set], n):
    """Sort every item of every user by (-score, index), drop seen ones, keep n."""
    scores = exact_scores(users, items)
    lists = []
    for u, row in enumerate(scores):
        order = sorted((j for j in range(len(row)) if j not in seen[u]), key=lambda j: (-row[j], j))
        lists.append(order[:n])
    return scores, lists


def assert_matches_brute_force(top, users, items, seen: list[set], n):
    """Lists, scores (bit for bit) and counts equal the brute-force reference's."""
    scores, expected = brute_force(users, items, seen, n)
    for u in range(len(users)):
        got = top.indices[u, : top.counts[u]].tolist()
        assert got == expected[u], f"user {u}"
        assert top.counts[u] == min(n, len(items) - len(seen[u]))
        assert np.array_equal(top.scores[u, : top.counts[u]], scores[u, expected[u]])
        assert (top.indices[u, top.counts[u] :] == -1).all()


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


def csr_of(seen: list[set]):
    """Return the CSR (indptr, indices) of per-user seen sets."""
    pairs = np.array([(u, i) for u, items in enumerate(seen) for i in items], dtype=np.int64)
    return seen_csr(pairs[:, 0], pairs[:, 1], len(seen))


def alike_scores(rng, users: int, items: int, decades: float, noise: float, spread: float):
    """Return (users, items) factors whose items all score about 1 for every user.

    Users point along one direction (with `noise` off it); each item is that direction times
    1 +- `spread` plus a component orthogonal to it, so item norms range over `decades`
    orders of magnitude (from 1) while the scores stay alike.
    """
    direction = rng.standard_normal(8)
    direction /= np.linalg.norm(direction)
    user_vecs = (direction + noise * rng.standard_normal((users, 8))).astype(np.float32)
    other = rng.standard_normal((items, 8))
    other -= np.outer(other @ direction, direction)  # orthogonal to the users' direction
    other *= (np.logspace(0, decades, items) / np.linalg.norm(other, axis=1))[:, None]
    level = 1 + spread * rng.standard_normal(items)
    item_vecs = rng.permutation(level[:, None] * direction + other).astype(np.float32)
    return user_vecs, item_vecs


def seen_sets(data) -> list[set]:
    ptr = data.seen_indptr
    return [set(data.seen_indices[ptr[u] : ptr[u + 1]].tolist()) for u in range(len(ptr) - 1)]


@pytest.mark.parametrize(("engine", "dtype"), FILTERS)
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("block_rows", [7, 256])
def test_matches_brute_force(engine, dtype, integer, block_rows):
    rng = np.random.default_rng(7)
    users, items, seen, (indptr, indices) = random_case(rng, 40, 50, 4, 45, integer)
    table = prepare_items(items, 10, device="cpu", engine=engine, dtype=dtype)

    top = top_n_unseen(users, table, indptr, indices, 10, block_rows=block_rows)

    assert_matches_brute_force(top, users, items, seen, 10)


@pytest.mark.parametrize(("engine", "dtype"), FILTERS)
@pytest.mark.parametrize("ties", [False, True])
def test_generated_data_with_heavy_users_matches_brute_force(engine, dtype, ties):
    # 2500 items: two tiles of 2048 on the CPU engine
    shape = Shape(users=60, items=2500, interactions=60 * 150, dim=8, min_seen=3)
    data = generate(shape, ties=ties)
    seen = seen_sets(data)
    seen[0] = set(range(5, 2500))  # fewer than n unseen items
    seen[1] = set(range(2500))  # nothing left
    seen[2] = set(range(0, 2500, 2))  # half the catalogue
    indptr, indices = csr_of(seen)
    table = prepare_items(data.item_vecs, 10, device="cpu", engine=engine, dtype=dtype)
    assert table.group == 16  # the grouped threshold is what is exercised

    top = top_n_unseen(data.user_vecs, table, indptr, indices, 10, block_rows=32)

    assert_matches_brute_force(top, data.user_vecs, data.item_vecs, seen, 10)
    assert top.counts[:2].tolist() == [5, 0]


@pytest.mark.parametrize(("engine", "dtype"), FILTERS)
def test_items_of_very_different_norms_scoring_alike_match_brute_force(engine, dtype):
    # Each item scores about 1 (within 2%) for every user, while its norm ranges from 1 to
    # 1e4: the filter's error on an item grows with its norm, so the per-item bounds decide
    # which near-ties are ranked exactly.
    rng = np.random.default_rng(11)
    users, items = alike_scores(rng, 30, 2500, decades=4, noise=0.01, spread=0.02)
    seen = [set(rng.choice(2500, 40, replace=False).tolist()) for _ in range(30)]
    indptr, indices = csr_of(seen)
    table = prepare_items(items, 10, device="cpu", engine=engine, dtype=dtype)

    top = top_n_unseen(users, table, indptr, indices, 10)

    assert_matches_brute_force(top, users, items, seen, 10)


@pytest.mark.parametrize(("engine", "dtype"), FILTERS)
def test_rows_whose_scores_are_all_negative(engine, dtype):
    # No group maximum is >= +0: the threshold cannot be trusted and every item is ranked.
    rng = np.random.default_rng(3)
    users = -np.abs(rng.standard_normal((9, 6))).astype(np.float32)
    items = np.abs(rng.standard_normal((300, 6))).astype(np.float32)
    items[::7] = 0  # exact zeros: -0 and +0 scores
    seen = [set(rng.choice(300, 20, replace=False).tolist()) for _ in range(9)]
    indptr, indices = csr_of(seen)
    table = prepare_items(items, 5, device="cpu", engine=engine, dtype=dtype)

    top = top_n_unseen(users, table, indptr, indices, 5)

    assert_matches_brute_force(top, users, items, seen, 5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_filter_matches_brute_force():
    data = generate(Shape(users=300, items=2000, interactions=300 * 60, dim=16, max_seen=1990))

    top = top_n_unseen(
        data.user_vecs, data.item_vecs, data.seen_indptr, data.seen_indices, 20, device="cuda"
    )

    assert_matches_brute_force(top, data.user_vecs, data.item_vecs, seen_sets(data), 20)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "f32"])
def test_buffers_kept_from_an_earlier_larger_call_give_exact_results(dtype):
    # The tiles engine keeps its score buffers between calls: a later call with fewer rows
    # per block works in the rows the earlier call left full of its own scores.
    rng = np.random.default_rng(4)
    users, items, seen, (indptr, indices) = random_case(rng, 70, 300, 6, 40)
    table = prepare_items(items, 8, device="cpu", engine="tiles", dtype=dtype)
    top_n_unseen(users[::-1].copy(), table, *csr_of(seen[::-1]), 8, block_rows=64)

    top = top_n_unseen(users[:20], table, indptr[:21], indices, 8, block_rows=16)

    assert_matches_brute_force(top, users[:20], items, seen[:20], 8)


def test_tiles_workers_multiply_on_one_thread_each(monkeypatch):
    # OpenMP's thread count is per thread: a worker thread that did not set it would let
    # torch.mm fan out to every core, on top of the kernel's own threads. With one kernel
    # thread, the process then burns CPU on threads other than the worker's.
    import time

    import jobs.topn as topn

    cpu = []
    real = topn._score_tiles

    def timed(*args):
        process, thread = time.process_time(), time.thread_time()
        real(*args)
        cpu.append((time.process_time() - process, time.thread_time() - thread))

    monkeypatch.setattr(topn, "_score_tiles", timed)
    rng = np.random.default_rng(1)
    users = rng.standard_normal((1024, 64)).astype(np.float32)
    table = prepare_items(rng.standard_normal((8192, 64)), 10, device="cpu", engine="tiles",
                          dtype=torch.float32)  # fmt: skip
    empty = np.zeros(len(users) + 1, dtype=np.int64)
    before = torch.get_num_threads()
    set_threads(1)
    try:
        for _ in range(3):
            top_n_unseen(users, table, empty, np.array([], dtype=np.int64), 10)
    finally:
        set_threads(before)
    process, thread = min(cpu)
    assert process <= 1.25 * thread, f"{process:.3f} s of CPU, {thread:.3f} s on the worker"


def test_cuda_is_the_default_device_only_when_torch_sees_one():
    from jobs.topn import default_device

    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


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


def test_rejects_a_filter_dtype_other_than_bf16_or_float32():
    with pytest.raises(ValueError, match="must be torch.bfloat16 or torch.float32"):
        prepare_items(np.ones((4, 2)), 1, device="cpu", dtype=torch.float16)


def test_rejects_factors_of_different_width():
    with pytest.raises(ValueError, match="same width"):
        top_n_unseen(np.ones((1, 3)), np.ones((2, 2)), np.array([0, 0]), np.array([]), 1)


def test_rejects_non_finite_factors_naming_the_row():
    users = np.ones((3, 2), dtype=np.float32)
    users[2, 1] = np.nan
    with pytest.raises(ValueError, match="user factors row 2 .*nan"):
        top_n_unseen(users, np.ones((4, 2)), np.zeros(4, dtype=np.int64), np.array([]), 1)


def adversarial_case(seed: int = 5, rows: int = 12, n_items: int = 512, n: int = 10):
    """Approximate scores as wrong as the error bound allows, in the worst direction.

    Every item scores about 1 (within 1%) while its norm, and so its bound, ranges over two
    orders of magnitude. Each row's true top n items are under-estimated by 90% of their
    bound and every other item over-estimated as much: a filter that drops a true top-n
    item here trusts its bound more than it proved.
    """
    rng = np.random.default_rng(seed)
    users, items = alike_scores(rng, rows, n_items, decades=2, noise=1e-4, spread=0.001)
    exact = exact_scores(users, items).astype(np.float64)
    norms = np.linalg.norm(items.astype(np.float64), axis=1)
    scale = 0.05 * np.linalg.norm(users.astype(np.float64), axis=1)
    tiny = np.full(rows, 1e-30)
    bound = scale[:, None] * norms[None, :] + tiny[:, None]
    best = np.argsort(-exact, axis=1, kind="stable")[:, :n]
    sign = np.ones_like(exact)
    np.put_along_axis(sign, best, -1.0, axis=1)
    approx = exact + sign * 0.9 * bound
    return users, items, exact, norms, scale, tiny, approx, n


def test_exact_ranking_keeps_every_item_its_bound_allows():
    users, items, exact, norms, scale, tiny, approx, n = adversarial_case()
    rows, count = approx.shape
    indptr = np.arange(rows + 1, dtype=np.int64) * count
    cols = np.tile(np.arange(count, dtype=np.int64), rows)
    out_idx = np.full((rows, n), -1, dtype=np.int32)
    out_scores = np.full((rows, n), -np.inf, dtype=np.float32)
    counts = np.zeros(rows, dtype=np.int32)

    finish_rows(indptr, cols, approx.astype(np.float32).ravel(), scale, tiny, norms,
                users.astype(np.float64), items, n, out_idx, out_scores, counts)  # fmt: skip

    expected = np.lexsort((np.tile(np.arange(count), (rows, 1)), -exact.astype(np.float32)))
    assert np.array_equal(out_idx, expected[:, :n])


@pytest.mark.parametrize("fmt", ["bf16", "f32"])
def test_tile_filter_keeps_every_item_its_bound_allows(fmt):
    users, items, exact, norms, scale, tiny, approx, n = adversarial_case()
    rows, count = approx.shape
    group = 8
    tiles = approx.astype(np.float32)
    finish = finish_block_f32
    if fmt == "bf16":  # the raw int16 bits, as the tiles engine hands them over
        tiles = torch.from_numpy(tiles).to(torch.bfloat16).view(torch.int16).numpy()
        finish = finish_block
    maxima = tiles.reshape(rows, -1, group).max(axis=2)
    out_idx = np.full((rows, n), -1, dtype=np.int32)
    out_scores = np.full((rows, n), -np.inf, dtype=np.float32)
    counts = np.zeros(rows, dtype=np.int32)
    group_norms = norms.reshape(-1, group).max(axis=1)

    finish(tiles[None], maxima, group, n, scale, tiny, norms, group_norms,
           users.astype(np.float64), items, out_idx, out_scores, counts)  # fmt: skip

    expected = np.lexsort((np.tile(np.arange(count), (rows, 1)), -exact.astype(np.float32)))
    assert np.array_equal(out_idx, expected[:, :n])


def test_floor_and_witness_norm_match_a_sort():
    # _base: the n-th largest group maximum as a float, less the largest norm among the
    # groups reaching it (scale 1, tiny 0), whatever bin of the histograms they fall in.
    rng = np.random.default_rng(2)
    for trial in range(200):
        maxima = rng.integers(-300, 3000, 400).astype(np.int16)
        maxima[rng.integers(0, 400, 60)] = maxima[0]  # many ties, some at the floor itself
        norms = rng.random(400) * 10
        n = int(rng.integers(1, 120))
        positive = np.sort(maxima[maxima >= 0])[::-1]
        got = _base(maxima, n, 1.0, 0.0, norms)
        if len(positive) < n:
            assert got == -np.inf
            continue
        kth = positive[n - 1]
        floor = torch.tensor([int(kth)], dtype=torch.int16).view(torch.bfloat16).float().item()
        assert got == floor - norms[maxima >= kth].max(), trial
