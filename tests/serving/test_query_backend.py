"""Which model encodes a version's queries: the job's ONNX export when it agrees, torch
otherwise, or what NIGHTREC_QUERY_BACKEND forces (real export by the job, real ONNX Runtime,
real torch)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from schemas.manifest import ONNX, ONNX_INT8, QUERY_ENCODER_DIR, TORCH, ManifestError
from schemas.settings import ConfigError
from schemas.text import DEFAULT_ENCODER, EncoderSpec
from schemas.text_onnx import read_manifest
from serving.query_encoder import QueryEncoder, open_query_model

pytestmark = pytest.mark.slow

SPEC = EncoderSpec(DEFAULT_ENCODER, device="cpu", batch_size=1)
QUERIES = ["scary zombie movies", "Amélie à Paris", "東京 物語", "x" * 500]


def run_dir(published):
    return published.out / "runs" / published.version


def test_a_version_encodes_queries_with_the_backend_the_job_chose(app, published):
    chosen = read_manifest(run_dir(published) / QUERY_ENCODER_DIR)
    model = app.extensions["nightrec"].versions.current().search.query_model

    assert model.variant == chosen.backend
    assert chosen.variants[ONNX]["min_cosine"] >= 0.9999  # float32 ONNX is exact here


def test_every_backend_gives_the_vectors_torch_gives(published):
    models = {b: open_query_model(run_dir(published), SPEC, b, 1) for b in (TORCH, ONNX, ONNX_INT8)}
    vectors = {b: m.encode(QUERIES) for b, m in models.items()}

    assert {b: m.variant for b, m in models.items()} == {b: b for b in models}
    assert np.einsum("ij,ij->i", vectors[ONNX], vectors[TORCH]).min() >= 0.9999
    assert np.einsum("ij,ij->i", vectors[ONNX_INT8], vectors[TORCH]).min() >= 0.95


def test_search_answers_alike_whichever_backend(published):
    from serving.app import create_app

    answers = {}
    for backend in (TORCH, ONNX):
        app = create_app(published.config(query_backend=backend), background=False)
        query = {"q": "scary zombie movies", "n": 8, "user_id": "1"}
        body = app.test_client().get("/v1/search", query_string=query).get_json()
        answers[backend] = [item["item_id"] for item in body["items"]]

    assert answers[TORCH] == answers[ONNX]


def test_a_run_without_an_export_encodes_with_torch_unless_onnx_is_forced(tmp_path):
    assert open_query_model(tmp_path, SPEC, "auto", 1).variant == TORCH
    with pytest.raises(ManifestError, match=f"cannot read {tmp_path}/{QUERY_ENCODER_DIR}"):
        open_query_model(tmp_path, SPEC, ONNX, 1)


def test_an_export_of_another_encoder_is_not_used(published, tmp_path):
    shutil.copytree(run_dir(published) / QUERY_ENCODER_DIR, tmp_path / QUERY_ENCODER_DIR)
    other = EncoderSpec("/models/labse", device="cpu")

    with pytest.raises(ManifestError, match="exports bundled:all-MiniLM-L6-v2, not /models/labse"):
        open_query_model(tmp_path, other, ONNX, 1)


def test_query_vectors_are_cached_per_model_and_text(published):
    lookups: list[bool] = []
    encoder = QueryEncoder(cache_size=2, on_lookup=lookups.append)
    onnx = open_query_model(run_dir(published), SPEC, ONNX, 1)
    torch = open_query_model(run_dir(published), SPEC, TORCH, 1)

    first = encoder.encode(onnx, "zombies")
    assert encoder.encode(onnx, "zombies") is first
    encoder.encode(torch, "zombies")  # another model: its own entry
    encoder.encode(onnx, "vampires")  # evicts the oldest ("zombies" by onnx)
    encoder.encode(onnx, "zombies")
    assert lookups == [False, True, False, False, False]
    assert not first.flags.writeable


def test_an_unknown_backend_is_refused_naming_the_variable():
    from serving.config import build_serve_config

    with pytest.raises(ConfigError, match="NIGHTREC_QUERY_BACKEND"):
        build_serve_config({}, {"NIGHTREC_QUERY_BACKEND": "tensorrt"})
