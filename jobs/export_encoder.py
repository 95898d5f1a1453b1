"""Export the run's text encoder to ONNX for the API's queries, and choose the query backend.

A search must encode its query the way the items were encoded, and fast on a CPU. The whole
sentence-transformers model (transformer, pooling, any dense layers) plus the final L2
normalisation is traced into one ONNX graph, then quantised to int8 (dynamic, per channel).
Each variant encodes a sample of item texts and is compared with the embeddings the index
holds; each backend, torch included, is timed on one-query encodes with one thread (the way
the API encodes). The fastest backend whose every sampled cosine is at least `MIN_COSINE` is
recorded as the choice; torch when no export agrees. On the bundled MiniLM the float32 export
agrees to 1e-6 and is about 3x faster than torch, int8 is about 6x faster but its worst
cosine is about 0.98, so float32 is chosen.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from jobs.atomic_dir import atomic_directory
from schemas.manifest import (
    ONNX,
    ONNX_INT8,
    QUERY_ENCODER_MANIFEST,
    QUERY_ENCODER_TOKENIZER,
    TORCH,
    QueryEncoderManifest,
)
from schemas.text import EncoderSpec
from schemas.text_onnx import ONNX_FILES, OnnxTextEncoder

log = logging.getLogger(__name__)

MIN_COSINE = 0.99
TIMED_QUERIES = 24
OPSET = 17


class ExportError(RuntimeError):
    """The encoder cannot be exported to ONNX (the API then encodes queries with torch)."""


def export_query_encoder(
    spec: EncoderSpec, directory: Path, texts: list[str], embeddings: np.ndarray
) -> QueryEncoderManifest:
    """Write `directory` (atomically): the ONNX variants, the tokenizer and the manifest.

    Args:
        spec: the encoder the items were embedded with.
        directory: where the export goes, e.g. OUT/runs/RUN_ID/query_encoder.
        texts: item texts to check the export on.
        embeddings: the indexed embeddings of those texts, row for row.

    Raises:
        ExportError: the model cannot be traced or its tokenizer cannot be saved.
    """
    model = _load_cpu_model(spec)
    inputs = list(model.tokenizer.model_input_names)
    with atomic_directory(directory) as tmp:
        _trace(model, inputs, tmp / ONNX_FILES[ONNX])
        _quantise(tmp / ONNX_FILES[ONNX], tmp / ONNX_FILES[ONNX_INT8])
        _save_tokenizer(model, tmp / QUERY_ENCODER_TOKENIZER)
        draft = QueryEncoderManifest(
            encoder=spec.name,
            dim=int(embeddings.shape[1]),
            max_seq_length=int(model.max_seq_length),
            inputs=inputs,
            backend=TORCH,
            min_cosine=MIN_COSINE,
            probes=len(texts),
            variants={name: {"file": ONNX_FILES[name]} for name in (ONNX, ONNX_INT8)},
        )
        (tmp / QUERY_ENCODER_MANIFEST).write_text(draft.to_json(), encoding="utf-8")
        variants = _measure(tmp, model, texts, embeddings)
        manifest = choose_backend(draft, variants)
        (tmp / QUERY_ENCODER_MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def choose_backend(
    draft: QueryEncoderManifest, variants: dict[str, dict[str, float | str]]
) -> QueryEncoderManifest:
    """Return the manifest with the fastest agreeing backend chosen and the reason recorded."""
    agreeing = {
        name: v
        for name, v in variants.items()
        if name == TORCH or float(v["min_cosine"]) >= draft.min_cosine
    }
    backend = min(agreeing, key=lambda name: float(agreeing[name]["ms_per_query"]))
    parts = [
        f"{name} {float(v['ms_per_query']):.2f} ms"
        + ("" if name == TORCH else f", min cosine {float(v['min_cosine']):.4f}")
        for name, v in variants.items()
    ]
    reason = f"fastest with every cosine >= {draft.min_cosine}: " + "; ".join(parts)
    return replace(draft, backend=backend, variants=variants, reason=reason)


def _load_cpu_model(spec: EncoderSpec):
    """Load a CPU copy of the encoder (the job's copy may sit on a GPU)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(spec.model_path(), device="cpu")
    if not hasattr(model.tokenizer, "backend_tokenizer"):
        raise ExportError(f"{spec.name} has no fast tokenizer (tokenizer.json) to export")
    return model.eval()


def _trace(model, inputs: list[str], path: Path) -> None:
    """Trace model + normalisation into an ONNX graph with dynamic batch and token axes."""
    import torch

    class Normalised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *arrays):
            features = self.model(dict(zip(inputs, arrays, strict=True)))
            return torch.nn.functional.normalize(features["sentence_embedding"], dim=-1)

    sample = model.tokenizer(["a short text", "a text"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    # The tracer warns about every Python-level branch it freezes; the agreement check on
    # real item texts is what tells whether the frozen graph is right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                Normalised().eval(),
                tuple(sample[name] for name in inputs),
                str(path),
                input_names=inputs,
                output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as exc:  # tracing fails in many model-specific ways
            raise ExportError(f"cannot trace the encoder: {type(exc).__name__}: {exc}") from exc


def _quantise(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It advises "pre-processing" on the root logger every time; the agreement check decides.
    root = logging.getLogger()
    advice = _DropMessage("pre-processing before quantization")
    root.addFilter(advice)
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(advice)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _save_tokenizer(model, path: Path) -> None:
    model.tokenizer.backend_tokenizer.save(str(path))


def _measure(root: Path, model, texts: list[str], embeddings: np.ndarray) -> dict[str, dict]:
    """Compare each ONNX variant with the indexed embeddings and time every backend."""
    import torch

    queries = _short_texts(texts)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch_ms = _ms_per_query(
            lambda q: model.encode(q, normalize_embeddings=True, show_progress_bar=False), queries
        )
    finally:
        torch.set_num_threads(threads)
    variants: dict[str, dict] = {TORCH: {"ms_per_query": round(torch_ms, 3)}}
    for name in (ONNX, ONNX_INT8):
        encoder = OnnxTextEncoder(root, name, threads=1)
        vectors = np.concatenate(
            [encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        )
        cosines = np.einsum("ij,ij->i", vectors, embeddings)
        variants[name] = {
            "file": ONNX_FILES[name],
            "min_cosine": round(float(cosines.min()), 6),
            "mean_cosine": round(float(cosines.mean()), 6),
            "ms_per_query": round(_ms_per_query(encoder.encode, queries), 3),
        }
    return variants


def _short_texts(texts: list[str]) -> list[str]:
    """Pick query-sized texts (the shortest item texts) to time one-query encoding on."""
    return sorted(texts, key=len)[: min(TIMED_QUERIES, len(texts))] or ["query"]


def _ms_per_query(encode, queries: list[str]) -> float:
    encode([queries[0]])  # the first call allocates; it is not what a request pays
    started = time.perf_counter()
    for query in queries:
        encode([query])
    return (time.perf_counter() - started) * 1000 / len(queries)
