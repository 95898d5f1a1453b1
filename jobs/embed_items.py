"""Stage `embed_items`: the text embedding of every item, reusing unchanged ones.

An item whose text hash matches one embedded by the last published run (same encoder) keeps
that vector; only new or changed texts are encoded, inside Spark with `mapInPandas` (the
model is loaded once per Python worker and kept there). Vectors are L2-normalised float32.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import Context, Stage, StageResult
from jobs.run_store import RunDir, latest_published
from schemas.tables import ITEM_EMBEDDINGS, ITEMS
from schemas.text import EncoderSpec, encode_texts, pick_device

log = logging.getLogger(__name__)

UNIT_TOLERANCE = 1e-3  # |norm^2 - 1| of a float32 unit vector is far below this


def encoder_partitions(spec: EncoderSpec, default_parallelism: int) -> int:
    """One partition for a GPU (one model on the card), else one per core so all encode."""
    if spec.device == "cuda":
        return 1
    return max(1, default_parallelism)


def resolve_device(spec: EncoderSpec, master: str) -> EncoderSpec:
    """Pick cuda or cpu on the driver when it runs the workers too (local mode)."""
    if spec.device or not master.startswith("local"):
        return spec  # on a cluster each executor picks for itself
    return replace(spec, device=pick_device(None))


def encode_partitions(spec: EncoderSpec, threads: int):
    """Return the mapInPandas function that encodes each batch's `text` column."""

    def encode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for number, batch in enumerate(batches):
            if number == 0:  # torch is imported only where there is something to encode
                import torch

                torch.set_num_threads(threads)
            vectors = encode_texts(spec, batch["text"].fillna("").tolist())
            yield pd.DataFrame(
                {
                    "item_id": batch["item_id"],
                    "text_hash": batch["text_hash"],
                    "embedding": list(vectors),
                }
            )

    return encode


def previous_embeddings(ctx: Context) -> DataFrame | None:
    """Return the last published run's embeddings when they came from the same encoder.

    The table is read whole here, so that a corrupt one (truncated files, vectors that are
    not unit vectors) is found now: unreadable, nothing is reused; vectors that are not unit
    vectors are dropped and their items encoded again. Never reuse garbage.
    """
    previous = latest_published(ctx.run, exclude=ctx.run.run_id)
    if previous is None or not previous.exists(ITEM_EMBEDDINGS):
        return None
    manifest = previous.read_manifest()
    if manifest.encoder != ctx.config.encoder or manifest.id_types != ctx.id_types:
        log.info("not reusing embeddings of %s: encoder or id types differ", previous.run_id)
        return None
    try:
        known = _read_previous(ctx, previous).cache()
        dropped = known.where(~_unit(F.col("embedding"))).count()
    except Exception as exc:  # reuse only saves time: any failure means encode everything
        _not_reused(ctx, f"{previous.path(ITEM_EMBEDDINGS)} unreadable ({_cause(exc)[:300]})")
        return None
    if dropped:
        _not_reused(
            ctx, f"{dropped} vectors of {previous.path(ITEM_EMBEDDINGS)} are not unit vectors"
        )
    return known.where(_unit(F.col("embedding")))


def _unit(vector: Column) -> Column:
    """True for a finite vector of L2 norm 1 (the encoder normalises every vector)."""
    squares = F.aggregate(vector, F.lit(0.0), lambda total, x: total + x * x)
    return F.coalesce(F.abs(squares - F.lit(1.0)) < F.lit(UNIT_TOLERANCE), F.lit(False))


def _cause(exc: Exception) -> str:
    """Return the telling line of an exception: Spark's own message, not the Py4J call."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    told = next((line for line in lines if "Exception: " in line), None)
    if told is not None:
        return told.split("Exception: ", 1)[1]
    return lines[0] if lines else type(exc).__name__


def _not_reused(ctx: Context, reason: str) -> None:
    log.warning("not reusing earlier embeddings: %s", reason)
    ctx.manifest.params["embeddings_not_reused"] = reason


def _read_previous(ctx: Context, previous: RunDir) -> DataFrame:
    df = previous.read_table(ctx.spark, ITEM_EMBEDDINGS, ctx.id_types)
    return df.select("text_hash", "embedding").dropDuplicates(["text_hash"])


def split_known(items: DataFrame, known: DataFrame | None) -> tuple[DataFrame, DataFrame | None]:
    """Split items (item_id, text, text_hash) into (to encode, reused with their embedding)."""
    if known is None:
        return items, None
    joined = items.join(known, "text_hash", "left")
    reused = joined.where(F.col("embedding").isNotNull())
    todo = joined.where(F.col("embedding").isNull()).drop("embedding")
    return todo, reused.select("item_id", "text_hash", "embedding")


def run(ctx: Context) -> StageResult:
    """Embed new and changed item texts, reuse the rest, write `item_embeddings`."""
    spec = ctx.config.encoder_spec
    ctx.manifest.encoder = spec.name
    items = ctx.read(ITEMS).select("item_id", "text", "text_hash")
    todo, reused = split_known(items, previous_embeddings(ctx))
    to_encode = todo.count()
    result = reused
    if to_encode or reused is None:
        spec = resolve_device(spec, ctx.config.spark_master)
        parallel = encoder_partitions(spec, ctx.spark.sparkContext.defaultParallelism)
        threads = max(1, (os.cpu_count() or 1) // parallel)
        encoded = (
            todo.select("item_id", "text", "text_hash")
            .repartition(parallel)
            .mapInPandas(encode_partitions(spec, threads), ITEM_EMBEDDINGS.ddl(**_ids(ctx)))
        )
        result = encoded if reused is None else encoded.unionByName(reused)
    ctx.write(result, ITEM_EMBEDDINGS)
    total = ctx.read(ITEM_EMBEDDINGS).count()
    ctx.manifest.counts.update(items_encoded=to_encode, items_reused=total - to_encode)
    ctx.manifest.params["encoder"] = {"name": spec.name, "device": spec.device or "auto"}
    return StageResult(total, f"{to_encode} encoded, {total - to_encode} reused ({spec.name})")


def _ids(ctx: Context) -> dict[str, str]:
    return {"user_id_type": ctx.id_types["user_id"], "item_id_type": ctx.id_types["item_id"]}


STAGE = Stage("embed_items", (ITEMS,), (ITEM_EMBEDDINGS,), run)
