"""ItemIndex: loads what the job's write_index wrote, checks it, and searches it (real ScaNN)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from jobs.scann_index import BRUTE_FORCE_BELOW, TREE_AH, write_index
from schemas.manifest import (
    INDEX_EMBEDDINGS,
    INDEX_ITEM_IDS,
    INDEX_MANIFEST,
    INDEX_SEARCHER_DIR,
    IndexManifest,
)
from schemas.text import EncoderSpec, encode_texts, item_text
from serving.item_index import IndexLoadError, ItemIndex

MOVIES = {
    1: ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    3114: ("Toy Story 2 (1999)", "Adventure|Animation|Children|Comedy|Fantasy"),
    1794: ("Dawn of the Dead (1978)", "Action|Drama|Horror"),
    1130: ("Night of the Living Dead (1968)", "Horror|Sci-Fi|Thriller"),
    71535: ("Zombieland (2009)", "Action|Comedy|Horror"),
    8874: ("Shaun of the Dead (2004)", "Comedy|Horror"),
    6: ("Heat (1995)", "Action|Crime|Thriller"),
    17: ("Sense and Sensibility (1995)", "Drama|Romance"),
    912: ("Casablanca (1942)", "Drama|Romance"),
    260: ("Star Wars: Episode IV - A New Hope (1977)", "Action|Adventure|Sci-Fi"),
    858: ("The Godfather (1972)", "Crime|Drama"),
    6377: ("Finding Nemo (2003)", "Adventure|Animation|Children|Comedy"),
    2571: ("The Matrix (1999)", "Action|Sci-Fi|Thriller"),
    1265: ("Groundhog Day (1993)", "Comedy|Fantasy|Romance"),
    2762: ("The Sixth Sense (1999)", "Drama|Horror|Mystery"),
    34: ("Babe (1995)", "Children|Drama"),
}
ZOMBIE_IDS = {1794, 1130, 71535, 8874}


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def small_index(tmp_path):
    """A 50-item brute-force index with int ids 1000..1049."""
    directory = tmp_path / "index"
    write_index(directory, unit_rows(50, 16), list(range(1000, 1050)), "enc", "run-1")
    return directory


def test_round_trip_search_equals_numpy_top_k(tmp_path):
    x = unit_rows(400, 32)
    write_index(tmp_path / "index", x, [f"item-{i}" for i in range(400)], "enc", "run-1")
    index = ItemIndex.load(tmp_path / "index")
    q = unit_rows(25, 32, seed=1)
    rows, scores = index.search(q, 10)
    exact = q @ x.T
    expected = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    assert rows.dtype == np.int32 and scores.dtype == np.float32
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(exact, expected, 1), atol=1e-5)
    np.testing.assert_array_equal(index.embeddings, x)
    assert index.manifest.searcher == "brute_force"


def test_a_single_query_vector_gives_one_dimensional_answers(small_index):
    index = ItemIndex.load(small_index)
    rows, scores = index.search(index.embeddings[7], 3)
    assert rows.shape == scores.shape == (3,)
    assert rows[0] == 7
    assert scores[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("count", [1, 2])
def test_tiny_catalogues_return_at_most_their_items(tmp_path, count):
    x = unit_rows(count, 8)
    write_index(tmp_path / "index", x, list(range(count)), "enc", "run-1")
    index = ItemIndex.load(tmp_path / "index")
    rows, scores = index.search(x, 10)
    assert rows.shape == (count, count)
    np.testing.assert_array_equal(rows[:, 0], np.arange(count))
    assert np.isfinite(scores).all()
    assert len(index) == count


def test_search_checks_the_query_shape_and_k(small_index):
    index = ItemIndex.load(small_index)
    with pytest.raises(
        ValueError, match="must be \\(16,\\) or \\(queries, 16\\) \\(got \\(2, 8\\)\\)"
    ):
        index.search(np.zeros((2, 8), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(index.embeddings[:1], 0)
    rows, scores = index.search(np.zeros((0, 16), dtype=np.float32), 3)
    assert rows.shape == scores.shape == (0, 3)


def test_row_of_takes_int_ids_and_their_url_strings(small_index):
    index = ItemIndex.load(small_index)
    assert index.item_ids[:2] == (1000, 1001)
    assert index.row_of(1042) == 42
    assert index.row_of("1042") == 42
    assert index.row_of(np.int64(1042)) == 42
    for unknown in ["01042", "+1042", " 1042", "1_042", "abc", "", 7, True, 1042.0, None]:
        assert index.row_of(unknown) is None, unknown


def test_row_of_takes_string_ids_as_given(tmp_path):
    ids = ["tt0114709", "42", "tt0113497"]
    write_index(tmp_path / "index", unit_rows(3, 8), ids, "enc", "run-1")
    index = ItemIndex.load(tmp_path / "index")
    assert index.item_ids == tuple(ids)
    assert index.row_of("tt0113497") == 2
    assert index.row_of("42") == 1
    assert index.row_of(42) == 1
    assert index.row_of("43") is None


def test_an_index_is_only_built_by_load():
    with pytest.raises(TypeError, match="ItemIndex.load"):
        ItemIndex(object(), None, [1], np.ones((1, 1), dtype=np.float32), None)  # type: ignore[arg-type]


def test_embeddings_are_read_only(small_index):
    index = ItemIndex.load(small_index)
    with pytest.raises(ValueError, match="read-only"):
        index.embeddings[0, 0] = 2.0


def _rewrite_manifest(directory, **changes):
    path = directory / INDEX_MANIFEST
    manifest = IndexManifest.from_json(path.read_text())
    path.write_text(replace(manifest, **changes).to_json())


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(IndexLoadError, match="index directory .*nowhere does not exist"):
        ItemIndex.load(tmp_path / "nowhere")


def test_a_missing_manifest_is_named(small_index):
    (small_index / INDEX_MANIFEST).unlink()
    with pytest.raises(IndexLoadError, match="index manifest .*manifest.json is missing"):
        ItemIndex.load(small_index)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "corrupt: index manifest is not JSON"),
        ('{"dim": 16}', "corrupt: index manifest lacks distance, count, encoder, run_id"),
        ("[1, 2]", "corrupt"),
    ],
)
def test_a_corrupt_manifest_is_named(small_index, text, message):
    (small_index / INDEX_MANIFEST).write_text(text)
    with pytest.raises(IndexLoadError, match=message):
        ItemIndex.load(small_index)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"count": 51}, "count mismatch: the manifest says 51 items, .*item_ids.json holds 50"),
        ({"dim": 8}, "dimension mismatch: the manifest says \\(50, 8\\) float32 embeddings"),
        ({"distance": "squared_l2"}, "distance must be 'dot_product' \\(got 'squared_l2'\\)"),
        ({"searcher": "faiss"}, "searcher must be one of"),
        ({"count": 0}, "count must be a positive int"),
    ],
)
def test_a_manifest_that_disagrees_with_the_files_is_named(small_index, changes, message):
    _rewrite_manifest(small_index, **changes)
    with pytest.raises(IndexLoadError, match=message):
        ItemIndex.load(small_index)


def test_ids_count_mismatch_is_named(small_index):
    (small_index / INDEX_ITEM_IDS).write_text(json.dumps(list(range(49))))
    with pytest.raises(IndexLoadError, match="manifest says 50 items, .* holds 49 ids"):
        ItemIndex.load(small_index)


def test_searcher_count_mismatch_is_named(tmp_path, small_index):
    write_index(tmp_path / "other", unit_rows(40, 16), list(range(40)), "enc", "run-1")
    (small_index / INDEX_SEARCHER_DIR).rename(tmp_path / "searcher-50")
    (tmp_path / "other" / INDEX_SEARCHER_DIR).rename(small_index / INDEX_SEARCHER_DIR)
    with pytest.raises(IndexLoadError, match="manifest says 50 items, the searcher in .* holds 40"):
        ItemIndex.load(small_index)


def test_pickled_embeddings_are_refused(small_index):
    np.save(small_index / INDEX_EMBEDDINGS, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IndexLoadError, match="embeddings file .* is corrupt"):
        ItemIndex.load(small_index)


def test_truncated_embeddings_are_named(small_index):
    path = small_index / INDEX_EMBEDDINGS
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IndexLoadError, match="embeddings file .* is corrupt"):
        ItemIndex.load(small_index)


def test_pickled_scann_docids_are_refused(small_index):
    (small_index / INDEX_SEARCHER_DIR / "scann_docids.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(IndexLoadError, match="pickled docids"):
        ItemIndex.load(small_index)


@pytest.mark.parametrize("missing", [INDEX_ITEM_IDS, INDEX_EMBEDDINGS, INDEX_SEARCHER_DIR])
def test_a_missing_file_is_named(small_index, missing):
    path = small_index / missing
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    else:
        path.unlink()
    with pytest.raises(IndexLoadError, match=f"{missing}.* missing"):
        ItemIndex.load(small_index)


def test_a_broken_searcher_file_is_named(small_index):
    (small_index / INDEX_SEARCHER_DIR / "scann_config.pb").write_bytes(b"garbage")
    with pytest.raises(IndexLoadError, match="searcher .* could not be loaded"):
        ItemIndex.load(small_index)


@pytest.mark.slow
def test_zombie_query_finds_the_zombie_films(tmp_path):
    ids = list(MOVIES)
    spec = EncoderSpec(device="cpu")
    vectors = encode_texts(spec, [item_text(*MOVIES[i]) for i in ids])
    write_index(tmp_path / "index", vectors, ids, spec.name, "run-1")
    index = ItemIndex.load(tmp_path / "index")
    rows, _ = index.search(encode_texts(spec, ["zombie horror"])[0], 3)
    assert {index.item_ids[r] for r in rows} <= ZOMBIE_IDS
    rows, _ = index.search(index.embeddings[index.row_of("1")], 2)
    assert [index.item_ids[r] for r in rows] == [1, 3114]


@pytest.mark.slow
def test_tree_index_round_trip_keeps_recall(tmp_path):
    rng = np.random.default_rng(11)
    centres = unit_rows(BRUTE_FORCE_BELOW // 50, 48, seed=2)
    x = centres[rng.integers(0, len(centres), BRUTE_FORCE_BELOW)]
    x = x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    write_index(tmp_path / "index", x, list(range(len(x))), "enc", "run-1")
    index = ItemIndex.load(tmp_path / "index")
    assert index.manifest.searcher == TREE_AH
    assert index.manifest.reorder < 300
    q = x[rng.choice(len(x), 300, replace=False)]
    rows, scores = index.search(q, 300)  # more than the manifest's re-scored candidates
    exact = q @ x.T
    np.testing.assert_allclose(scores, np.take_along_axis(exact, rows, 1), atol=1e-5)
    kth = np.sort(exact, axis=1)[:, -20]
    assert np.mean(np.take_along_axis(exact, rows[:, :20], 1) >= kth[:, None] - 1e-5) >= 0.95
