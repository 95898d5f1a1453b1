"""Item text cleaning and the shared encoder (the real bundled model)."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.text import EncoderSpec, clean_genres, clean_title, encode_texts, item_text, text_hash


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Toy Story (1995)", "Toy Story"),
        ("Babylon 5 (1994-1998)", "Babylon 5"),
        ("Cosmos (1980) ", "Cosmos"),
        ("Heat", "Heat"),
        ("1984 (1984)", "1984"),
        ("Se7en  (a.k.a. Seven) (1995)", "Se7en (a.k.a. Seven)"),
        (None, ""),
    ],
)
def test_clean_title_removes_the_year_only(title, expected):
    assert clean_title(title) == expected


def test_clean_genres_drops_pipes_and_no_genres_listed():
    assert clean_genres("Adventure|Animation|Children") == "Adventure Animation Children"
    assert clean_genres("(no genres listed)") == ""
    assert clean_genres(None) == ""


def test_item_text_joins_title_and_genres():
    assert item_text("Toy Story (1995)", "Adventure|Animation") == "Toy Story Adventure Animation"
    assert item_text("Heat (1995)", "(no genres listed)") == "Heat"
    assert item_text(None, None) == ""


def test_text_hash_is_stable_and_sensitive():
    assert text_hash("a") == text_hash("a")
    assert text_hash("a") != text_hash("b")
    assert len(text_hash("a")) == 32


def test_bundled_encoder_gives_unit_vectors_and_sensible_neighbours():
    texts = ["Dawn of the Dead Horror", "Toy Story Animation Children Comedy", "zombies"]

    vectors = encode_texts(EncoderSpec(device="cpu"), texts)

    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[2] @ vectors[0] > vectors[2] @ vectors[1]


@pytest.mark.gpu
def test_cuda_encoding_agrees_with_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    texts = ["Dawn of the Dead Horror", "Toy Story Animation Children Comedy"]

    on_gpu = encode_texts(EncoderSpec(device="cuda"), texts)
    on_cpu = encode_texts(EncoderSpec(device="cpu"), texts)

    np.testing.assert_allclose((on_gpu * on_cpu).sum(axis=1), 1.0, atol=1e-3)
