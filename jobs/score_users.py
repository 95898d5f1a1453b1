"""Stage `score_users`: every user x every item, seen items masked, exact top-N per user.

Spark only moves data: user factors with each user's seen items go through `mapInPandas`
in blocks of users, the item factors are broadcast once, and the maths is `jobs.topn`
(prepared once per task, with as many threads as the task has cores: `spark.task.cpus`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from jobs.context import Context, Stage, StageResult
from jobs.errors import StageError
from jobs.topn import ItemTable, prepare_items, set_threads, top_n_unseen
from schemas.tables import INTERACTIONS, ITEM_FACTORS, RECOMMENDATIONS, USER_FACTORS


def score_block(
    block: pd.DataFrame, item_ids: np.ndarray, items: ItemTable, position: pd.Index, n: int
) -> pd.DataFrame:
    """Return the long-format top-n rows (user_id, item_id, rank, score) of a block of users."""
    users = np.stack(block["factors"].to_numpy()).astype(np.float32, copy=False)
    seen = block["seen"].to_numpy()
    lengths = np.fromiter((0 if s is None else len(s) for s in seen), np.int64, len(seen))
    flat = np.concatenate([s for s in seen if s is not None and len(s)] or [np.array([])])
    seen_idx = position.get_indexer(flat) if len(flat) else np.zeros(0, dtype=np.int64)
    if (seen_idx < 0).any():
        raise ValueError("a seen item has no item factors")
    indptr = np.zeros(len(block) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    top = top_n_unseen(users, items, indptr, seen_idx, n)
    valid = top.indices >= 0
    return pd.DataFrame(
        {
            "user_id": np.repeat(block["user_id"].to_numpy(), top.counts),
            "item_id": item_ids[top.indices[valid]],
            "rank": np.nonzero(valid)[1].astype(np.int32) + 1,
            "score": top.scores[valid],
        }
    )


def scorer(broadcast, n: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Return the mapInPandas function scoring each batch of users against the broadcast items."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        task = TaskContext.get()
        set_threads(task.cpus() if task is not None else 1)  # this task's cores, no more
        item_ids, item_vecs = broadcast.value
        items = prepare_items(item_vecs, n)  # once per task, reused by every block
        position = pd.Index(item_ids)
        for block in batches:
            yield score_block(block, item_ids, items, position, n)

    return score


def run(ctx: Context) -> StageResult:
    """Score all users by blocks inside Spark and write `recommendations`."""
    items = ctx.collect(ITEM_FACTORS, order_by="item_id")
    if items.empty:
        raise StageError("item_factors is empty: nothing to score")
    item_ids = items["item_id"].to_numpy()
    item_vecs = np.ascontiguousarray(np.stack(items["factors"].to_numpy()), dtype=np.float32)
    broadcast = ctx.spark.sparkContext.broadcast((item_ids, item_vecs))
    seen = ctx.read(INTERACTIONS).groupBy("user_id").agg(F.collect_list("item_id").alias("seen"))
    users = ctx.read(USER_FACTORS).join(seen, "user_id", "left")
    n_users = ctx.manifest.counts.get("users") or users.count()
    blocks = max(1, math.ceil(n_users / ctx.config.score_block_users))
    ddl = RECOMMENDATIONS.ddl(ctx.id_types["user_id"], ctx.id_types["item_id"])
    recs = users.repartition(blocks).mapInPandas(scorer(broadcast, ctx.config.top_n), ddl)
    ctx.spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", ctx.config.score_block_users)
    ctx.write(recs, RECOMMENDATIONS)
    broadcast.unpersist()
    rows = ctx.read(RECOMMENDATIONS).count()
    _check_lengths(ctx, rows, len(item_ids))
    ctx.manifest.counts["recommendations"] = rows
    return StageResult(rows, f"{n_users} users x {len(item_ids)} items, top {ctx.config.top_n}")


def _check_lengths(ctx: Context, rows: int, n_items: int) -> None:
    """Every user must get exactly min(N, unseen) items; anything else is a bug, not data."""
    per_user = ctx.read(INTERACTIONS).groupBy("user_id").count()
    expected = per_user.select(
        F.sum(F.least(F.lit(ctx.config.top_n), F.lit(n_items) - F.col("count")))
    ).first()[0]
    if rows != (expected or 0):
        raise StageError(f"scoring produced {rows} rows, expected {expected}")


STAGE = Stage("score_users", (USER_FACTORS, ITEM_FACTORS, INTERACTIONS), (RECOMMENDATIONS,), run)
