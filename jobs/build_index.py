"""Stage `build_index`: the ScaNN index over item text embeddings, and similar items.

The index directory (searcher, item ids, embeddings, manifest) is what the API loads for
live search. Each item's similar list takes text neighbours from the index and re-ranks
them by text cosine blended with the cosine of the CF item factors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.context import Context, Stage, StageResult
from jobs.errors import StageError
from jobs.scann_index import build_searcher, write_index
from jobs.similar_items import similar_items
from schemas.tables import ITEM_EMBEDDINGS, ITEM_FACTORS, SIMILAR_ITEMS

INDEX_DIR = "index"


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
    with ctx.run.local_dir(INDEX_DIR) as directory:  # copied to a remote OUT afterwards
        manifest = write_index(
            directory, text, list(item_ids), ctx.config.encoder, ctx.run.run_id, searcher=searcher
        )
    rows, scores = similar_items(
        text, cf, ctx.config.similar_n, cf_weight=ctx.config.similar_cf_weight, searcher=searcher
    )
    table = similar_table(item_ids, rows, scores)
    schema = SIMILAR_ITEMS.ddl(ctx.id_types["user_id"], ctx.id_types["item_id"])
    ctx.write(ctx.spark.createDataFrame(table, schema=schema), SIMILAR_ITEMS)
    ctx.manifest.counts.update(index_items=manifest.count, similar_items=len(table))
    ctx.manifest.params["index"] = {"searcher": manifest.searcher, "dim": manifest.dim}
    return StageResult(len(table), f"{manifest.searcher} index of {manifest.count} items")


STAGE = Stage("build_index", (ITEM_EMBEDDINGS, ITEM_FACTORS), (SIMILAR_ITEMS,), run)
