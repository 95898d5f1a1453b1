"""Stage `build_index`: the ScaNN index over item text embeddings, and similar items.

The index directory (searcher, item ids, embeddings, manifest) is what the API loads for
live search. Each item's similar list takes text neighbours from the index and re-ranks
them by text cosine blended with the cosine of the CF item factors.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.atomic_dir import atomic_directory
from jobs.context import Context, Stage, StageResult
from jobs.errors import StageError
from jobs.export_encoder import ExportError, export_query_encoder
from jobs.run_store import latest_published
from jobs.scann_index import build_searcher, write_index
from jobs.similar_items import similar_items
from schemas.manifest import QUERY_ENCODER_DIR, ManifestError
from schemas.tables import ITEM_EMBEDDINGS, ITEM_FACTORS, ITEMS, SIMILAR_ITEMS
from schemas.text_onnx import read_manifest

log = logging.getLogger(__name__)

INDEX_DIR = "index"
PROBES = 256


def similar_table(item_ids: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Turn (items, n) neighbour rows and scores (-1 padded) into the `similar_items` table."""
    valid = rows >= 0
    return pd.DataFrame(
        {
            "item_id": np.repeat(item_ids, valid.sum(axis=1)),
            "similar_item_id": item_ids[rows[valid]],
            "rank": np.nonzero(valid)[1].astype(np.int32) + 1,
            "score": scores[valid].astype(np.float32),
        }
    )


def load_vectors(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return item ids (catalogue order), text embeddings and CF factors without the bias."""
    embeddings = ctx.collect(ITEM_EMBEDDINGS, "item_id", "embedding", order_by="item_id")
    frame = embeddings.merge(ctx.collect(ITEM_FACTORS), on="item_id", how="left")
    if frame.empty:
        raise StageError("item_embeddings is empty: nothing to index")
    if frame["factors"].isna().any():
        raise StageError("some items have embeddings but no CF factors; rerun train_cf")
    text = np.ascontiguousarray(np.stack(frame["embedding"].to_numpy()), dtype=np.float32)
    cf = np.stack(frame["factors"].to_numpy()).astype(np.float32)
    return frame["item_id"].to_numpy(), text, cf[:, :-1]  # last column: the item bias


def run(ctx: Context) -> StageResult:
    """Write the index and the similar-items table."""
    item_ids, text, cf = load_vectors(ctx)
    searcher = build_searcher(text)  # one build serves the index files and similar items
    manifest = write_index(
        ctx.run.path(INDEX_DIR),
        text,
        list(item_ids),
        ctx.config.encoder,
        ctx.run.run_id,
        searcher=searcher,
    )
    rows, scores = similar_items(
        text, cf, ctx.config.similar_n, cf_weight=ctx.config.similar_cf_weight, searcher=searcher
    )
    table = similar_table(item_ids, rows, scores)
    schema = SIMILAR_ITEMS.ddl(ctx.id_types["user_id"], ctx.id_types["item_id"])
    ctx.write(ctx.spark.createDataFrame(table, schema=schema), SIMILAR_ITEMS)
    ctx.manifest.counts.update(index_items=manifest.count, similar_items=len(table))
    ctx.manifest.params["index"] = {"searcher": manifest.searcher, "dim": manifest.dim}
    backend = query_encoder(ctx, item_ids, text) if ctx.config.export_query_encoder else "torch"
    ctx.manifest.params["query_backend"] = backend
    return StageResult(
        len(table), f"{manifest.searcher} index of {manifest.count} items, queries by {backend}"
    )


def query_encoder(ctx: Context, item_ids: np.ndarray, text: np.ndarray) -> str:
    """Write the run's `query_encoder/` and return the query backend it chose.

    The last published run's export is copied when it came from the same encoder; otherwise
    the encoder is exported and checked on a sample of the items. "torch" when that fails.
    """
    target = ctx.run.path(QUERY_ENCODER_DIR)
    reused = _reuse_previous(ctx, target)
    if reused is not None:
        return reused
    rows = np.unique(np.linspace(0, len(item_ids) - 1, min(PROBES, len(item_ids))).astype(int))
    texts = ctx.collect(ITEMS, "item_id", "text").set_index("item_id")["text"]
    probe_texts = texts.reindex(item_ids[rows]).fillna("").tolist()
    try:
        manifest = export_query_encoder(ctx.config.encoder_spec, target, probe_texts, text[rows])
    except Exception as exc:  # the export only speeds queries up: never fail the run for it
        reason = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
        log.warning("no ONNX query encoder, the API will encode queries with torch: %s", reason)
        ctx.manifest.params["query_backend_error"] = reason
        return "torch"
    log.info("query encoder: %s (%s)", manifest.backend, manifest.reason)
    return manifest.backend


def _reuse_previous(ctx: Context, target: Path) -> str | None:
    """Copy the last published run's export of the same encoder; return its backend or None."""
    previous = latest_published(ctx.run.out, exclude=ctx.run.run_id)
    if previous is None:
        return None
    source = previous.path(QUERY_ENCODER_DIR)
    try:
        manifest = read_manifest(source)
    except ManifestError:
        return None  # none there (or unreadable): export anew
    if manifest.encoder != ctx.config.encoder:
        return None
    with atomic_directory(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return manifest.backend


STAGE = Stage("build_index", (ITEM_EMBEDDINGS, ITEM_FACTORS, ITEMS), (SIMILAR_ITEMS,), run)
