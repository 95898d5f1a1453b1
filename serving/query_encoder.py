"""Query vectors: the model that encodes a version's queries, and an LRU cache of recent ones.

A version's queries are encoded by the backend the job chose when it exported the encoder
(`query_encoder/` in the run directory, see `jobs.export_encoder`): ONNX Runtime when the
export's vectors agree with the indexed item embeddings, else the sentence-transformers model
with torch. Either way a query is encoded as the items were, within the agreement measured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas.manifest import QUERY_ENCODER_DIR, TORCH, ManifestError
from schemas.text import EncoderSpec, TorchTextEncoder
from schemas.text_onnx import OnnxTextEncoder, read_manifest


class TextModel(Protocol):
    """What encodes query texts: `OnnxTextEncoder` or `TorchTextEncoder`."""

    key: str
    variant: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def open_query_model(run_dir: Path, spec: EncoderSpec, backend: str, threads: int) -> TextModel:
    """Open the model that encodes queries for a run.

    Args:
        run_dir: the run's directory (its `query_encoder/` holds the ONNX export, if any).
        spec: the encoder the version names (or the one configured for the API).
        backend: "auto" (the export's choice; torch without an export), "torch", "onnx" or
            "onnx-int8".
        threads: threads one encoding may use.

    Raises:
        ManifestError: an ONNX backend was asked for and the run has no such export of the
            encoder.
    """
    directory = run_dir / QUERY_ENCODER_DIR
    if backend == "auto":
        try:
            manifest = read_manifest(directory)
        except ManifestError:
            manifest = None
        backend = TORCH
        if manifest is not None and manifest.encoder == spec.name:
            backend = manifest.backend
    if backend == TORCH:
        return TorchTextEncoder(spec, threads)
    model = OnnxTextEncoder(directory, backend, threads)
    if model.manifest.encoder != spec.name:
        raise ManifestError(
            f"{directory} exports {model.manifest.encoder}, not {spec.name}; "
            "set NIGHTREC_QUERY_BACKEND=torch to encode queries with the configured encoder"
        )
    return model


class QueryEncoder:
    """Encodes queries with a version's model; remembers recent ones.

    Args:
        cache_size: query vectors kept (least recently used dropped first; 0 = none).
        on_lookup: called with True for a cache hit and False for a miss.
    """

    def __init__(
        self, cache_size: int = 1024, on_lookup: Callable[[bool], None] | None = None
    ) -> None:
        self.cache_size = cache_size
        self.on_lookup = on_lookup
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        # torch shares one intra-op thread pool per process: concurrent forward passes only
        # slow each other down. ONNX Runtime sessions run concurrently, one thread each.
        self._torch_lock = threading.Lock()

    def encode(self, model: TextModel, text: str) -> np.ndarray:
        """Return the L2-normalised float32 vector of `text` (read-only; shared by callers)."""
        key = (model.key, text)
        with self._cache_lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
        if self.on_lookup is not None:
            self.on_lookup(vector is not None)
        if vector is not None:
            return vector
        vector = self._encode(model, text)
        if self.cache_size:
            with self._cache_lock:
                self._cache[key] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return vector

    def warm(self, model: TextModel) -> int:
        """Run the model once (not on the first query); return its vector width."""
        return int(self._encode(model, "warm up").shape[0])

    def _encode(self, model: TextModel, text: str) -> np.ndarray:
        if model.variant == TORCH:
            with self._torch_lock:
                vector = model.encode([text])[0]
        else:
            vector = model.encode([text])[0]
        vector.setflags(write=False)
        return vector
