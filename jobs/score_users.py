"""Stage `score_users`: every user x every item, seen items masked, exact top-N per user.

Spark only moves data, in as few passes as it can:
- Each user's seen items are gathered beside their factors in one shuffle: both tables are
  hash-partitioned by user_id into one partition per block of users, so the grouping and the
  join need no exchange of their own, and no round-robin repartition follows.
- The item factors are broadcast once. Each Python worker prepares the kernel's item side
  once and keeps it for every later task of the run (`_catalogue`), not once per task.
- `mapInArrow` hands the kernel (`jobs.topn`) Arrow batches of `score_block_users` users.
  Their list columns are read as flat buffers (no pandas, no object per user), and the
  long-format rows go back as Arrow arrays built from the kernel's output.

The batch maths (`score_batch`) is plain pyarrow/numpy, testable without a SparkSession.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import Context, Stage, StageResult
from jobs.errors import StageError
from jobs.topn import ItemTable, prepare_items, set_threads, top_n_unseen
from schemas.tables import INTERACTIONS, ITEM_FACTORS, RECOMMENDATIONS, USER_FACTORS


@dataclass(frozen=True)
class Catalogue:
    """The item side every batch is scored against: ids in index order and the kernel's table."""

    ids: pa.Array
    table: ItemTable


def score_batch(batch: pa.RecordBatch, items: Catalogue, n: int) -> pa.RecordBatch:
    """Return the long-format top-n rows (user_id, item_id, rank, score) of a batch of users.

    The batch has user_id, factors (list of d floats) and seen (list of item ids, null for
    a user with none).
    """
    users = _factors(batch.column("factors"), items.table.exact.shape[1], batch.column("user_id"))
    seen = batch.column("seen")
    lengths = pc.fill_null(pc.list_value_length(seen), 0).to_numpy()
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = seen.flatten()  # skips null lists, honours the batch's slice
    positions = pc.index_in(flat, value_set=items.ids)
    if positions.null_count:
        at = int(np.flatnonzero(positions.is_null().to_numpy(zero_copy_only=False))[0])
        user = batch.column("user_id")[int(np.searchsorted(indptr, at, side="right")) - 1]
        raise ValueError(
            f"user {user.as_py()!r} has seen item {flat[at].as_py()!r}, which has no item factors"
        )
    top = top_n_unseen(users, items.table, indptr, positions.to_numpy(), n)
    valid = top.indices >= 0
    owner = np.repeat(np.arange(len(users)), top.counts)
    return pa.RecordBatch.from_arrays(
        [
            batch.column("user_id").take(pa.array(owner)),
            items.ids.take(pa.array(top.indices[valid])),
            pa.array(np.nonzero(valid)[1].astype(np.int32) + 1),
            pa.array(top.scores[valid]),
        ],
        names=list(RECOMMENDATIONS.column_names),
    )


def _factors(column: pa.Array, dim: int, user_ids: pa.Array) -> np.ndarray:
    """Return a list<float> column of width dim as a (rows, dim) float32 array, zero-copy."""
    widths = pc.fill_null(pc.list_value_length(column), -1).to_numpy()
    bad = np.flatnonzero(widths != dim)
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"user {user_ids[row].as_py()!r} has {max(int(widths[row]), 0)} factors, "
            f"the items have {dim}"
        )
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(len(column), dim)


_prepared: dict[str, tuple[object, int, Catalogue]] = {}  # per Python worker process


def _catalogue(broadcast, n: int) -> Catalogue:
    """Return the prepared item side of this broadcast, preparing it once per worker process.

    Reused Python workers (`spark.python.worker.reuse`) keep the broadcast value object
    between tasks, so its identity says whether the cached table belongs to this run.
    """
    value = broadcast.value
    cached = _prepared.get("items")
    if cached is None or cached[0] is not value or cached[1] != n:
        item_ids, item_vecs = value
        cached = (value, n, Catalogue(pa.array(item_ids), prepare_items(item_vecs, n)))
        _prepared["items"] = cached
    return cached[2]


def scorer(broadcast, n: int) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Return the mapInArrow function scoring each batch of users against the broadcast items."""

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        task = TaskContext.get()
        set_threads(task.cpus() if task is not None else 1)  # this task's cores, no more
        items = _catalogue(broadcast, n)
        for batch in batches:
            yield score_batch(batch, items, n)

    return score


def users_with_seen(user_factors: DataFrame, interactions: DataFrame, blocks: int) -> DataFrame:
    """Return (user_id, factors, seen) in `blocks` partitions, with one shuffle of each input.

    Both sides are hash-partitioned by user_id alike, so Spark groups and joins them in place.
    """
    seen = (
        interactions.select("user_id", "item_id")
        .repartition(blocks, "user_id")
        .groupBy("user_id")
        .agg(F.collect_list("item_id").alias("seen"))
    )
    factors = user_factors.select("user_id", "factors").repartition(blocks, "user_id")
    return factors.join(seen, "user_id", "left")


def recommend(
    users: DataFrame, item_ids: np.ndarray, item_vecs: np.ndarray, n: int, block: int, ddl: str
) -> tuple[DataFrame, Callable[[], None]]:
    """Return the recommendations of users (user_id, factors, seen) and a release function.

    Batches hold at most `block` users. Call the release function once the result is written:
    it frees the broadcast item factors.
    """
    spark = users.sparkSession
    broadcast = spark.sparkContext.broadcast((item_ids, item_vecs))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", block)
    return users.mapInArrow(scorer(broadcast, n), ddl), broadcast.unpersist


def run(ctx: Context) -> StageResult:
    """Score all users by blocks inside Spark and write `recommendations`."""
    items = ctx.collect(ITEM_FACTORS, order_by="item_id")
    if items.empty:
        raise StageError("item_factors is empty: nothing to score")
    item_ids = items["item_id"].to_numpy()
    item_vecs = np.ascontiguousarray(np.stack(items["factors"].to_numpy()), dtype=np.float32)
    n_users = ctx.manifest.counts.get("users") or ctx.read(USER_FACTORS).count()
    block = ctx.config.score_block_users
    users = users_with_seen(
        ctx.read(USER_FACTORS), ctx.read(INTERACTIONS), max(1, math.ceil(n_users / block))
    )
    ddl = RECOMMENDATIONS.ddl(ctx.id_types["user_id"], ctx.id_types["item_id"])
    recs, release = recommend(users, item_ids, item_vecs, ctx.config.top_n, block, ddl)
    ctx.write(recs, RECOMMENDATIONS)
    release()
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
