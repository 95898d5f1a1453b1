"""Query encoding with ONNX Runtime: the run's encoder as the job exported it, without torch.

The exported graph holds the transformer, the pooling and the L2 normalisation, so it returns
what `schemas.text.encode_texts` returns for the same texts, up to the float error the job
measured at export (recorded in the `QueryEncoderManifest`). Texts are tokenised with the
model's own tokenizer.json by the `tokenizers` library and truncated to the model's
max_seq_length, as sentence-transformers does. Heavy imports stay inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.manifest import (
    ONNX,
    ONNX_INT8,
    QUERY_ENCODER_MANIFEST,
    QUERY_ENCODER_TOKENIZER,
    ManifestError,
    QueryEncoderManifest,
)

if TYPE_CHECKING:
    import numpy as np

ONNX_FILES = {ONNX: "model.onnx", ONNX_INT8: "model-int8.onnx"}


def read_manifest(directory: str | Path) -> QueryEncoderManifest:
    """Read the manifest of an exported query encoder directory.

    Raises:
        ManifestError: the manifest is missing or malformed.
    """
    path = Path(directory) / QUERY_ENCODER_MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return QueryEncoderManifest.from_json(text)


def tokenizer(path: str | Path, max_length: int) -> Any:
    """Load a tokenizer.json that truncates to `max_length` tokens and does not pad."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def onnx_session(path: str | Path, threads: int) -> Any:
    """Open an ONNX Runtime CPU session using `threads` threads for one inference."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def model_inputs(tok: Any, texts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """Tokenise texts into the padded int64 arrays the exported graph takes, by input name."""
    import numpy as np

    encodings = tok.encode_batch(texts)
    width = max(1, max(len(e.ids) for e in encodings))
    arrays = {name: np.zeros((len(texts), width), dtype=np.int64) for name in names}
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    for row, encoding in enumerate(encodings):
        for name in names:
            values = getattr(encoding, fields[name])
            arrays[name][row, : len(values)] = values
    return arrays


class OnnxTextEncoder:
    """One exported variant of an encoder, ready to encode texts.

    Args:
        directory: the `query_encoder/` directory the job wrote.
        variant: ONNX (float32) or ONNX_INT8.
        threads: threads one inference may use.

    Raises:
        ManifestError: the directory's manifest is missing or malformed, or lacks the variant.
    """

    def __init__(self, directory: str | Path, variant: str, threads: int = 1) -> None:
        root = Path(directory)
        self.manifest = read_manifest(root)
        if variant not in ONNX_FILES or variant not in self.manifest.variants:
            raise ManifestError(f"{root} holds no {variant!r} export of {self.manifest.encoder}")
        self.variant = variant
        self.dim = self.manifest.dim
        self.key = f"{self.manifest.encoder}|{variant}"
        self._tokenizer = tokenizer(root / QUERY_ENCODER_TOKENIZER, self.manifest.max_seq_length)
        self._session = onnx_session(root / ONNX_FILES[variant], threads)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Return the L2-normalised float32 vectors of texts, shape (len(texts), dim)."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        feeds = model_inputs(self._tokenizer, texts, self.manifest.inputs)
        (vectors,) = self._session.run(None, feeds)
        return np.ascontiguousarray(vectors, dtype=np.float32)
