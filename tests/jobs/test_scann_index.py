"""The ScaNN item index (build, write) and the similar-items maths, on real ScaNN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.scann_index import (
    BRUTE_FORCE,
    BRUTE_FORCE_BELOW,
    TREE_AH,
    SearcherConfig,
    build_searcher,
    choose_config,
    search_rows,
    write_index,
)
from jobs.similar_items import similar_items
from schemas.manifest import (
    INDEX_EMBEDDINGS,
    INDEX_ITEM_IDS,
    INDEX_MANIFEST,
    INDEX_SEARCHER_DIR,
    IndexManifest,
)
from schemas.text import EncoderSpec, encode_texts, item_text

MOVIES = [
    ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    ("Toy Story 2 (1999)", "Adventure|Animation|Children|Comedy|Fantasy"),
    ("Toy Story 3 (2010)", "Adventure|Animation|Children|Comedy|Fantasy|IMAX"),
    ("Dawn of the Dead (1978)", "Action|Drama|Horror"),
    ("Night of the Living Dead (1968)", "Horror|Sci-Fi|Thriller"),
    ("Zombieland (2009)", "Action|Comedy|Horror"),
    ("Shaun of the Dead (2004)", "Comedy|Horror"),
    ("World War Z (2013)", "Action|Drama|Horror|Sci-Fi|Thriller"),
    ("Heat (1995)", "Action|Crime|Thriller"),
    ("Pride and Prejudice (1995)", "Drama|Romance"),
    ("Sense and Sensibility (1995)", "Drama|Romance"),
    ("Casablanca (1942)", "Drama|Romance"),
    ("Star Wars: Episode IV - A New Hope (1977)", "Action|Adventure|Sci-Fi"),
    ("The Empire Strikes Back (1980)", "Action|Adventure|Sci-Fi"),
    ("Alien (1979)", "Horror|Sci-Fi"),
    ("The Godfather (1972)", "Crime|Drama"),
    ("Goodfellas (1990)", "Crime|Drama"),
    ("Finding Nemo (2003)", "Adventure|Animation|Children|Comedy"),
    ("The Lion King (1994)", "Adventure|Animation|Children|Drama|Musical|IMAX"),
    ("Titanic (1997)", "Drama|Romance"),
    ("The Matrix (1999)", "Action|Sci-Fi|Thriller"),
    ("Groundhog Day (1993)", "Comedy|Fantasy|Romance"),
    ("Jurassic Park (1993)", "Action|Adventure|Sci-Fi|Thriller"),
    ("Fargo (1996)", "Comedy|Crime|Drama|Thriller"),
    ("Amelie (2001)", "Comedy|Romance"),
    ("Se7en (1995)", "Mystery|Thriller"),
    ("The Shining (1980)", "Horror"),
    ("Babe (1995)", "Children|Drama"),
    ("Apollo 13 (1995)", "Adventure|Drama|IMAX"),
    ("Notting Hill (1999)", "Comedy|Romance"),
]
ZOMBIE_FILMS = {3, 4, 5, 6, 7}


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_similar(x: np.ndarray, factors: np.ndarray | None, n: int, cf_weight: float):
    """Brute-force reference: every pair scored, the diagonal excluded, ties to the lower row."""
    score = x @ x.T
    if factors is not None:
        f = factors / np.linalg.norm(factors, axis=1, keepdims=True)
        score = (1 - cf_weight) * score + cf_weight * (f @ f.T)
    np.fill_diagonal(score, -np.inf)
    cols = np.broadcast_to(np.arange(len(x)), score.shape)
    order = np.lexsort((cols, -score), axis=1)[:, :n]
    return order, np.take_along_axis(score, order, axis=1)


@pytest.fixture(scope="module")
def movie_vectors() -> np.ndarray:
    return encode_texts(EncoderSpec(device="cpu"), [item_text(t, g) for t, g in MOVIES])


def test_choose_config_is_exact_below_the_threshold_and_a_tree_above():
    assert choose_config(1) == SearcherConfig(BRUTE_FORCE)
    assert choose_config(BRUTE_FORCE_BELOW - 1).kind == BRUTE_FORCE
    big = choose_config(62_500)
    assert big.kind == TREE_AH
    assert big.num_leaves == 250
    assert 1 <= big.leaves_to_search <= big.num_leaves
    assert big.reorder >= 100


def test_brute_force_search_equals_numpy_top_k():
    x = unit_rows(500, 32)
    q = unit_rows(20, 32, seed=1)
    rows, scores = search_rows(build_searcher(x), q, 10)
    expected = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, expected, 1), atol=1e-5)


@pytest.mark.parametrize("count", [1, 2])
def test_tiny_catalogue_pads_when_k_exceeds_the_items(count):
    x = unit_rows(count, 8)
    rows, scores = search_rows(build_searcher(x, k=10), x, 5)
    assert rows.shape == (count, 5)
    np.testing.assert_array_equal(rows[:, 0], np.arange(count))
    assert (rows[:, count:] == -1).all()
    assert np.isneginf(scores[:, count:]).all()
    assert np.isfinite(scores[:, :count]).all()


def clustered_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit rows around n / 50 random centres: a stand-in for text embeddings."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(n // 50, dim, seed=seed + 1)
    x = centres[rng.integers(0, len(centres), n)]
    x = x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at(rows: np.ndarray, q: np.ndarray, x: np.ndarray, k: int) -> float:
    """Share of returned rows scoring at least the exact k-th score (ties count as hits)."""
    exact = q @ x.T
    kth = np.sort(exact, axis=1)[:, -k]
    got = np.take_along_axis(exact, rows[:, :k].astype(np.int64), axis=1)
    return float(np.mean(got >= kth[:, None] - 1e-5))


@pytest.mark.slow
def test_default_tree_searcher_keeps_recall_above_095():
    x = clustered_rows(BRUTE_FORCE_BELOW, 64, seed=7)
    config = choose_config(len(x))
    assert config.kind == TREE_AH
    q = clustered_rows(300, 64, seed=8)
    rows, _ = search_rows(build_searcher(x, config=config), q, 10)
    assert recall_at(rows, q, x, 10) >= 0.95


def test_small_tree_searcher_builds_and_finds_each_item_itself():
    x = clustered_rows(500, 16, seed=4)
    # Every leaf searched: tree training is not deterministic, the assertions below must be.
    searcher = build_searcher(x, config=SearcherConfig(TREE_AH, 22, 22, 50))
    rows, scores = search_rows(searcher, x[:40], 5)
    np.testing.assert_array_equal(rows[:, 0], np.arange(40))
    assert recall_at(rows, x[:40], x, 5) >= 0.9
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    # More rows than the 50 re-scored: ScaNN would cut the answer at 50 and pad with NaN.
    rows, scores = search_rows(searcher, x[:3], 80)
    assert (rows >= 0).all()
    np.testing.assert_allclose(scores, np.take_along_axis(x[:3] @ x.T, rows, 1), atol=1e-5)


def test_tree_config_must_fit_the_catalogue():
    with pytest.raises(ValueError, match="num_leaves <= items \\(got 3, 30, 20\\)"):
        build_searcher(unit_rows(20, 4), config=SearcherConfig(TREE_AH, 30, 3, 50))


def test_embeddings_must_be_normalised_rows():
    with pytest.raises(ValueError, match="L2-normalised rows \\(row 1 has norm 2"):
        build_searcher(np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        build_searcher(np.zeros((0, 4), dtype=np.float32))


@pytest.mark.parametrize("ids", [[10, 20, 3], ["tt0114709", "tt0113497", "42"]])
def test_write_index_keeps_ids_as_given(tmp_path, ids):
    x = unit_rows(3, 16)
    manifest = write_index(tmp_path / "index", x, ids, "bundled:all-MiniLM-L6-v2", "run-1")
    root = tmp_path / "index"
    assert json.loads((root / INDEX_ITEM_IDS).read_text()) == ids
    np.testing.assert_array_equal(np.load(root / INDEX_EMBEDDINGS, allow_pickle=False), x)
    assert IndexManifest.from_json((root / INDEX_MANIFEST).read_text()) == manifest
    assert manifest == IndexManifest(
        dim=16,
        distance="dot_product",
        count=3,
        encoder="bundled:all-MiniLM-L6-v2",
        run_id="run-1",
        searcher=BRUTE_FORCE,
    )
    assert (root / INDEX_SEARCHER_DIR / "scann_assets.pbtxt").is_file()
    assert not (root / INDEX_SEARCHER_DIR / "scann_docids.pkl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert root.stat().st_mode & 0o777 == 0o755


def test_write_index_accepts_numpy_ids(tmp_path):
    write_index(tmp_path / "index", unit_rows(2, 4), np.array([7, 9]), "enc", "run-1")
    assert json.loads((tmp_path / "index" / INDEX_ITEM_IDS).read_text()) == [7, 9]


def test_write_index_reuses_a_searcher_built_for_similar_items(tmp_path):
    x = unit_rows(30, 8)
    searcher = build_searcher(x)
    write_index(tmp_path / "index", x, list(range(30)), "enc", "run-1", searcher=searcher)
    idx, _ = similar_items(x, None, n=3, cf_weight=0.0, searcher=searcher)
    np.testing.assert_array_equal(idx, numpy_similar(x, None, 3, 0.0)[0])
    with pytest.raises(ValueError, match="searcher holds 30 items, embeddings 29"):
        write_index(tmp_path / "other", x[:29], list(range(29)), "enc", "run-1", searcher=searcher)
    assert not (tmp_path / "other").exists()


def test_write_index_replaces_an_older_index(tmp_path):
    write_index(tmp_path / "index", unit_rows(3, 8), [1, 2, 3], "enc", "run-1")
    write_index(tmp_path / "index", unit_rows(2, 8), [5, 6], "enc", "run-2")
    manifest = IndexManifest.from_json((tmp_path / "index" / INDEX_MANIFEST).read_text())
    assert (manifest.run_id, manifest.count) == ("run-2", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([1, 2], "expected 3 item ids"),
        ([1, 1, 2], "unique"),
        ([1, "2", 3], "all int or all str"),
        ([True, False, 2], "all int or all str"),
    ],
)
def test_write_index_rejects_bad_ids_and_leaves_nothing(tmp_path, ids, message):
    with pytest.raises(ValueError, match=message):
        write_index(tmp_path / "index", unit_rows(3, 8), ids, "enc", "run-1")
    assert list(tmp_path.iterdir()) == []


def test_write_index_failure_midway_leaves_no_index(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_index(tmp_path / "index", unit_rows(3, 8), [1, 2, 3], "enc", "run-1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("candidates", [5, 100])
def test_similar_items_text_only_equals_numpy_reference(candidates):
    x = unit_rows(300, 24)
    idx, val = similar_items(x, None, n=5, candidates=candidates, cf_weight=0.0)
    ref_idx, ref_val = numpy_similar(x, None, 5, 0.0)
    assert idx.dtype == np.int32 and val.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, atol=1e-5)


def test_similar_items_blend_equals_numpy_reference_over_all_candidates():
    x = unit_rows(200, 24)
    factors = np.random.default_rng(5).standard_normal((200, 6)).astype(np.float32)
    idx, val = similar_items(x, factors, n=7, candidates=199, cf_weight=0.3, block_bytes=20_000)
    ref_idx, ref_val = numpy_similar(x, factors, 7, 0.3)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(val, ref_val, atol=1e-5)


def test_similar_items_never_returns_the_item_itself_even_among_duplicates():
    base = unit_rows(4, 8)
    x = np.vstack([base, base, base])  # rows i, i + 4, i + 8 share a vector
    idx, val = similar_items(x, None, n=3, candidates=3, cf_weight=0.0)
    rows = np.arange(len(x))[:, None]
    assert (idx != rows).all()
    twins = [sorted({i % 4, i % 4 + 4, i % 4 + 8} - {i}) for i in range(len(x))]
    np.testing.assert_array_equal(idx[:, :2], twins)
    np.testing.assert_allclose(val[:, :2], 1.0, atol=1e-5)


@pytest.mark.parametrize(("count", "n"), [(1, 3), (2, 3), (5, 10)])
def test_similar_items_pads_small_catalogues(count, n):
    x = unit_rows(count, 8)
    idx, val = similar_items(x, np.ones((count, 2)), n=n, candidates=2)
    assert idx.shape == val.shape == (count, n)
    real = min(n, count - 1)
    assert (idx[:, real:] == -1).all() and np.isneginf(val[:, real:]).all()
    assert (idx[:, :real] >= 0).all() and np.isfinite(val[:, :real]).all()
    assert (idx != np.arange(count)[:, None]).all()


def test_similar_items_zero_factor_row_counts_as_cosine_zero():
    x = unit_rows(3, 8)
    factors = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    idx, val = similar_items(x, factors, n=2, cf_weight=1.0)
    np.testing.assert_array_equal(idx, [[2, 1], [0, 2], [0, 1]])
    np.testing.assert_allclose(val, [[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], atol=1e-6)


def test_similar_items_checks_its_arguments():
    x = unit_rows(4, 8)
    with pytest.raises(ValueError, match="searcher holds 5 items, embeddings 4"):
        similar_items(x, None, n=2, searcher=build_searcher(unit_rows(5, 8)))
    with pytest.raises(ValueError, match="item_factors must be \\(4, f\\)"):
        similar_items(x, np.ones((3, 2)), n=2)
    with pytest.raises(ValueError, match="cf_weight"):
        similar_items(x, None, n=2, cf_weight=1.5)


@pytest.mark.slow
def test_similar_items_of_toy_story_are_its_sequels(movie_vectors):
    idx, _ = similar_items(movie_vectors, None, n=3, candidates=10, cf_weight=0.0)
    assert idx[0, :2].tolist() == [1, 2]  # Toy Story -> Toy Story 2, Toy Story 3
    assert set(idx[3].tolist()) <= ZOMBIE_FILMS  # Dawn of the Dead -> other zombie films


@pytest.mark.slow
def test_zombie_query_finds_the_zombie_films(movie_vectors):
    query = encode_texts(EncoderSpec(device="cpu"), ["zombies"])
    rows, _ = search_rows(build_searcher(movie_vectors), query, 4)
    assert set(rows[0].tolist()) <= ZOMBIE_FILMS
