"""Query encoding: torch against the ONNX exports (float32 and int8), in one process.

    python -m benchmarks.query_encoder [--data DIR] [--probes N] [--encoder NAME]

Encodes a sample of the catalogue's item texts with the sentence-transformers model (torch,
as the job embeds items), exports the model with the job's own code
(`jobs.export_encoder.export_query_encoder`, the path every run takes) into a temporary
directory, and prints what it measured: each backend's milliseconds per one-query encode on
one thread, the speed-up over torch, and the agreement of each export's vectors with torch's
(min and mean cosine over the sample). The backend a run would choose is the fastest one
whose every cosine is at least 0.99. Last line:

    query_encoder: torch_ms=T onnx_ms=O (Xx, min_cos=C) onnx_int8_ms=I (Yx, min_cos=D) chosen=B
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from jobs.export_encoder import export_query_encoder
from schemas.manifest import ONNX, ONNX_INT8, TORCH
from schemas.text import DEFAULT_ENCODER, EncoderSpec, encode_texts, item_text

REPO = Path(__file__).resolve().parent.parent


def item_texts(data: Path, count: int) -> list[str]:
    """Return `count` item texts spread evenly over the MovieLens catalogue in `data`."""
    with (data / "movies.csv").open(newline="", encoding="utf-8") as handle:
        texts = [item_text(row["title"], row["genres"]) for row in csv.DictReader(handle)]
    rows = np.unique(np.linspace(0, len(texts) - 1, min(count, len(texts))).astype(int))
    return [texts[i] for i in rows]


def main() -> None:
    """Measure and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "ml-latest-small"))
    parser.add_argument("--probes", type=int, default=1000, help="item texts compared")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = EncoderSpec(args.encoder, device="cpu")
    texts = item_texts(Path(args.data), args.probes)
    embeddings = encode_texts(spec, texts)
    with tempfile.TemporaryDirectory(prefix="nightrec-bench-encoder-") as tmp:
        manifest = export_query_encoder(spec, Path(tmp) / "query_encoder", texts, embeddings)
    variants = manifest.variants
    torch_ms = float(variants[TORCH]["ms_per_query"])
    print(f"{len(texts)} item texts, {spec.name}, one thread, one query per call")
    print(f"{'backend':<11}{'ms/query':>10}{'vs torch':>10}{'min cos':>10}{'mean cos':>10}")
    for name in (TORCH, ONNX, ONNX_INT8):
        v = variants[name]
        ms = float(v["ms_per_query"])
        low, mean = v.get("min_cosine", 1.0), v.get("mean_cosine", 1.0)
        print(f"{name:<11}{ms:>10.2f}{torch_ms / ms:>9.2f}x{low:>10.4f}{mean:>10.4f}")
    parts = [f"torch_ms={torch_ms:.2f}"]
    for name in (ONNX, ONNX_INT8):
        v = variants[name]
        speedup = torch_ms / float(v["ms_per_query"])
        parts.append(
            f"{name.replace('-', '_')}_ms={float(v['ms_per_query']):.2f} "
            f"({speedup:.2f}x, min_cos={float(v['min_cosine']):.4f})"
        )
    print(f"query_encoder: {' '.join(parts)} chosen={manifest.backend}")


if __name__ == "__main__":
    main()
