"""Manifests: what a run produced (manifest.json) and what an index directory holds."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

RUN_MANIFEST = "manifest.json"
INDEX_MANIFEST = "manifest.json"
INDEX_ITEM_IDS = "item_ids.json"
INDEX_EMBEDDINGS = "embeddings.npy"
INDEX_SEARCHER_DIR = "scann"
QUERY_ENCODER_DIR = "query_encoder"
QUERY_ENCODER_MANIFEST = "manifest.json"
QUERY_ENCODER_TOKENIZER = "tokenizer.json"
TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
QUERY_BACKENDS = (TORCH, ONNX, ONNX_INT8)


class ManifestError(ValueError):
    """A manifest is missing fields or holds values of the wrong kind."""


def _json_object(text: str, what: str) -> dict[str, Any]:
    """Parse a manifest's text into a dict, or raise ManifestError saying what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return data


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    names = {f.name for f in fields(cls)}
    required = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ManifestError(f"{what} lacks {', '.join(missing)}")
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class IndexManifest:
    """Describes an `index/` directory: a ScaNN searcher over item text embeddings.

    Attributes:
        dim: embedding width.
        distance: "dot_product" (embeddings are L2-normalised, so this is cosine).
        count: number of items; item_ids.json and embeddings.npy have this many rows.
        encoder: the encoder name the embeddings came from (queries must use the same).
        run_id: the run that built it.
        searcher: "scann" (tree partitioning, asymmetric hashing, exact re-scoring) or
            "brute_force" (ScaNN's exhaustive float32 search, for small catalogues).
        num_leaves: partitions of the tree ("scann" only; 0 otherwise).
        leaves_to_search: partitions searched per query ("scann" only; 0 otherwise).
        reorder: candidates re-scored exactly per query ("scann" only; 0 otherwise); a search
            for k items must re-score at least k, or ScaNN pads the tail with NaN.
    """

    dim: int
    distance: str
    count: int
    encoder: str
    run_id: str
    searcher: str = "scann"
    num_leaves: int = 0
    leaves_to_search: int = 0
    reorder: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        return _from_dict(cls, _json_object(text, "index manifest"), "index manifest")


@dataclass(frozen=True)
class QueryEncoderManifest:
    """Describes a `query_encoder/` directory: the run's encoder exported for fast queries.

    The job exports the encoder to ONNX (float32, and int8 by dynamic quantisation), encodes a
    sample of item texts with each and compares them with the embeddings it indexed, and times
    one-query encoding of every backend on one thread. `backend` is the fastest one whose
    vectors agree (every sampled cosine >= `min_cosine`), torch when none does.

    Attributes:
        encoder: the encoder name the export came from (the index's encoder).
        dim: vector width.
        max_seq_length: tokens kept per text (as sentence-transformers truncates).
        inputs: the model's input names, in the order the graph takes them.
        backend: the chosen backend, one of QUERY_BACKENDS.
        min_cosine: the agreement a backend needs to be chosen.
        probes: item texts compared.
        variants: per backend: "file" (ONNX only), "min_cosine" and "mean_cosine" against the
            indexed embeddings (ONNX only), "ms_per_query" measured at export.
        reason: why `backend` was chosen, in words.
    """

    encoder: str
    dim: int
    max_seq_length: int
    inputs: list[str]
    backend: str
    min_cosine: float
    probes: int
    variants: dict[str, dict[str, Any]]
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> QueryEncoderManifest:
        what = "query encoder manifest"
        manifest = _from_dict(cls, _json_object(text, what), what)
        if manifest.backend not in QUERY_BACKENDS:
            raise ManifestError(
                f"query encoder manifest names backend {manifest.backend!r}; "
                f"expected one of {', '.join(QUERY_BACKENDS)}"
            )
        return manifest


@dataclass
class RunManifest:
    """The record of one run, written to OUT/runs/RUN_ID/manifest.json.

    Attributes:
        run_id: the run's id (also the default version name in Redis).
        status: "running", "published" or "failed".
        started_at, finished_at: ISO-8601 UTC times.
        version: the Redis version written (None until published).
        reason: one line saying why a failed run failed.
        inputs: where the data came from and row counts read.
        counts: rows per output table.
        rejected: rejected rows per source and reason.
        params: model and scoring parameters.
        quality: held-out metrics of the model and the popularity baseline.
        stages: seconds and rows per stage, in the order they ran.
        encoder: the text encoder's name.
        id_types: Spark types of user_id and item_id.
    """

    run_id: str
    status: str = "running"
    started_at: str = ""
    finished_at: str | None = None
    version: str | None = None
    reason: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    encoder: str = ""
    id_types: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> RunManifest:
        return _from_dict(cls, _json_object(text, "run manifest"), "run manifest")
