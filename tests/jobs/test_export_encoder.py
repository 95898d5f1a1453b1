"""The ONNX export of the encoder for queries: the backend choice and a real export of the
bundled model (real torch, real ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.export_encoder import MIN_COSINE, choose_backend, export_query_encoder
from schemas.manifest import ONNX, ONNX_INT8, QUERY_BACKENDS, TORCH, QueryEncoderManifest
from schemas.text import EncoderSpec, TorchTextEncoder, encode_texts, item_text
from schemas.text_onnx import OnnxTextEncoder, read_manifest

SPEC = EncoderSpec(device="cpu")
TEXTS = [
    item_text(title, genres)
    for title, genres in [
        ("Dawn of the Dead (1978)", "Action|Drama|Horror"),
        ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
        ("Heat (1995)", "Action|Crime|Thriller"),
        ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
        ("Zombieland (2009)", "Action|Comedy|Horror"),
        ("Seven Samurai (Shichinin no samurai) (1954)", "Action|Adventure|Drama"),
        ("", ""),
        ("A very long title " * 60, "Drama"),  # past max_seq_length: truncated alike
    ]
]


def draft(**changes) -> QueryEncoderManifest:
    values = dict(
        encoder="bundled:all-MiniLM-L6-v2",
        dim=384,
        max_seq_length=256,
        inputs=["input_ids", "attention_mask"],
        backend=TORCH,
        min_cosine=MIN_COSINE,
        probes=10,
        variants={},
    )
    return QueryEncoderManifest(**{**values, **changes})


def variants(torch_ms, onnx_ms, onnx_cos, int8_ms, int8_cos) -> dict:
    return {
        TORCH: {"ms_per_query": torch_ms},
        ONNX: {"ms_per_query": onnx_ms, "min_cosine": onnx_cos},
        ONNX_INT8: {"ms_per_query": int8_ms, "min_cosine": int8_cos},
    }


@pytest.mark.parametrize(
    ("measured", "chosen"),
    [
        (variants(7.0, 2.4, 1.0, 1.1, 0.98), ONNX),  # int8 fastest but disagrees
        (variants(7.0, 2.4, 1.0, 1.1, 0.995), ONNX_INT8),  # int8 fastest and agrees
        (variants(7.0, 2.4, 0.97, 1.1, 0.96), TORCH),  # no export agrees
        (variants(1.0, 2.4, 1.0, 1.5, 1.0), TORCH),  # torch is fastest here
        (variants(7.0, 2.4, MIN_COSINE, 9.0, 1.0), ONNX),  # exactly the bar counts as agreeing
    ],
)
def test_the_fastest_agreeing_backend_is_chosen(measured, chosen):
    manifest = choose_backend(draft(), measured)

    assert manifest.backend == chosen
    assert manifest.variants == measured
    assert manifest.reason.startswith(f"fastest with every cosine >= {MIN_COSINE}")


def test_manifest_names_a_known_backend():
    with pytest.raises(ValueError, match="backend 'tensorrt'; expected one of torch, onnx"):
        QueryEncoderManifest.from_json(draft(backend="tensorrt").to_json())


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    directory = tmp_path_factory.mktemp("export") / "query_encoder"
    manifest = export_query_encoder(SPEC, directory, TEXTS, encode_texts(SPEC, TEXTS))
    return directory, manifest


@pytest.mark.slow
def test_export_of_the_bundled_encoder_agrees_with_torch(export):
    directory, manifest = export

    assert read_manifest(directory) == manifest
    assert manifest.backend in QUERY_BACKENDS
    assert (manifest.dim, manifest.max_seq_length, manifest.probes) == (384, 256, len(TEXTS))
    assert manifest.variants[ONNX]["min_cosine"] >= 0.9999
    assert 0.9 < manifest.variants[ONNX_INT8]["mean_cosine"] <= 1.0 + 1e-6
    assert all(manifest.variants[name]["ms_per_query"] > 0 for name in QUERY_BACKENDS)
    assert sorted(p.name for p in directory.iterdir()) == [
        "manifest.json",
        "model-int8.onnx",
        "model.onnx",
        "tokenizer.json",
    ]


@pytest.mark.slow
def test_onnx_queries_match_torch_queries(export):
    directory, _ = export
    queries = ["scary zombie movies", "ÉTÉ 85 — drame", "  ", "x" * 3000, "tokyo 東京 物語"]
    onnx = OnnxTextEncoder(directory, ONNX).encode(queries)
    torch = TorchTextEncoder(SPEC).encode(queries)

    assert onnx.shape == torch.shape == (len(queries), 384) and onnx.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", onnx, torch).min() >= 0.9999


@pytest.mark.slow
def test_a_second_export_replaces_the_first_whole(export, tmp_path):
    directory = tmp_path / "query_encoder"
    directory.mkdir()
    (directory / "stale.onnx").write_bytes(b"left over")
    export_query_encoder(SPEC, directory, TEXTS[:3], encode_texts(SPEC, TEXTS[:3]))

    assert not (directory / "stale.onnx").exists()
    assert read_manifest(directory).probes == 3
