"""Stage `train_cf`: the Keras CF model on all interactions, and the popularity list.

The interactions come to the driver once (Arrow), ids map to dense indices (items in
catalogue order, item_id ascending), `jobs.cf_model` trains (with the items' text
embeddings when every item has one), and the factors go back to Parquet with the original
ids. The popular list serves users the model does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from jobs.cf_model import CFFactors, CFParams, train_cf
from jobs.context import Context, Stage, StageResult
from jobs.evaluate import popularity_scores
from schemas.tables import (
    INTERACTIONS,
    ITEM_EMBEDDINGS,
    ITEM_FACTORS,
    ITEMS,
    POPULAR,
    USER_FACTORS,
)


@dataclass(frozen=True)
class Interactions:
    """The interactions as dense indices, with the id arrays to map them back."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def index_interactions(interactions: pd.DataFrame, item_ids: np.ndarray) -> Interactions:
    """Map ids to indices: users in sorted order, items in the given catalogue order."""
    user_ids, user_idx = np.unique(interactions["user_id"].to_numpy(), return_inverse=True)
    item_idx = pd.Index(item_ids).get_indexer(interactions["item_id"].to_numpy())
    if (item_idx < 0).any():
        raise ValueError("an interaction names an item outside the catalogue")
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        user_idx=user_idx.astype(np.int64),
        item_idx=item_idx.astype(np.int64),
        rating=interactions["rating"].to_numpy(dtype=np.float32),
        timestamp=interactions["timestamp"].to_numpy(dtype=np.int64),
    )


def load_interactions(ctx: Context) -> Interactions:
    """Bring the run's interactions to the driver as indices (cached for later stages)."""
    if "interactions" not in ctx.cache:
        items = ctx.collect(ITEMS, "item_id", order_by="item_id")
        frame = ctx.collect(INTERACTIONS)
        ctx.cache["interactions"] = index_interactions(frame, items["item_id"].to_numpy())
    return ctx.cache["interactions"]


def load_item_text(ctx: Context, data: Interactions) -> np.ndarray | None:
    """Return the item text embeddings in catalogue order (cached), or None when some item
    lacks one (the model then trains without text)."""
    if "item_text" not in ctx.cache:
        frame = ctx.collect(ITEM_EMBEDDINGS, "item_id", "embedding", order_by="item_id")
        ids = frame["item_id"].to_numpy()
        complete = len(frame) == data.n_items and np.array_equal(ids, data.item_ids)
        text = np.stack(frame["embedding"].to_numpy()).astype(np.float32) if complete else None
        ctx.cache["item_text"] = text
    return ctx.cache["item_text"]


def cf_params(ctx: Context, data: Interactions) -> CFParams:
    """Return the model's parameters: its defaults, overridden by the run's settings.

    Ratings weight the positives only when they are all above zero (a 0 or negative rating
    has no meaningful power); otherwise every interaction counts the same.
    """
    params = replace(CFParams(), dim=ctx.config.cf_dim, seed=ctx.config.cf_seed)
    if ctx.config.cf_epochs:
        params = replace(params, epochs=ctx.config.cf_epochs)
    if ctx.config.cf_l2 is not None:
        params = replace(params, l2=ctx.config.cf_l2)
    if ctx.config.cf_learning_rate is not None:
        params = replace(params, learning_rate=ctx.config.cf_learning_rate)
    if ctx.config.cf_text_weight is not None:
        params = replace(params, text_weight=ctx.config.cf_text_weight)
    if len(data.rating) and data.rating.min() <= 0:
        params = replace(params, rating_weight=0.0)
    return params


def fit(ctx: Context, data: Interactions, rows: np.ndarray | slice = slice(None)) -> CFFactors:
    """Train the CF model on the selected interactions (all by default)."""
    return train_cf(
        data.user_idx[rows],
        data.item_idx[rows],
        data.rating[rows],
        data.n_users,
        data.n_items,
        cf_params(ctx, data),
        timestamp=data.timestamp[rows],
        item_text=load_item_text(ctx, data),
    )


def popular_table(data: Interactions, n: int) -> pd.DataFrame:
    """Return the n items with most users (ties by catalogue order) as the `popular` table."""
    counts = popularity_scores(data.item_idx, data.n_items)
    order = np.lexsort((np.arange(data.n_items), -counts))[: min(n, data.n_items)]
    return pd.DataFrame(
        {
            "item_id": data.item_ids[order],
            "rank": np.arange(1, len(order) + 1, dtype=np.int32),
            "score": counts[order].astype(np.float32),
        }
    )


def factors_frame(ids: np.ndarray, factors: np.ndarray, id_col: str) -> pd.DataFrame:
    return pd.DataFrame({id_col: ids, "factors": list(factors.astype(np.float32))})


def run(ctx: Context) -> StageResult:
    """Train on every interaction and write user_factors, item_factors and popular."""
    data = load_interactions(ctx)
    params = cf_params(ctx, data)
    model = fit(ctx, data)
    ctx.manifest.params["cf"] = {
        **params.to_dict(),
        "item_text": load_item_text(ctx, data) is not None,
        "seconds": round(model.history["seconds"], 2),
    }
    spark, ids = ctx.spark, ctx.id_types
    for frame, table in (
        (factors_frame(data.user_ids, model.user_factors, "user_id"), USER_FACTORS),
        (factors_frame(data.item_ids, model.item_factors, "item_id"), ITEM_FACTORS),
        (popular_table(data, ctx.config.top_n), POPULAR),
    ):
        schema = table.ddl(ids["user_id"], ids["item_id"])
        ctx.write(spark.createDataFrame(frame, schema=schema), table)
    loss = model.history["loss"][-1] if model.history.get("loss") else float("nan")
    return StageResult(
        data.n_users + data.n_items,
        f"{data.n_users} users, {data.n_items} items, dim {params.dim}, "
        f"{params.epochs} epochs, loss {loss:.4g}",
    )


STAGE = Stage(
    "train_cf",
    (INTERACTIONS, ITEMS, ITEM_EMBEDDINGS),
    (USER_FACTORS, ITEM_FACTORS, POPULAR),
    run,
)
