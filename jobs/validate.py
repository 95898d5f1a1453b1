"""Row validation of raw input tables: pure DataFrame -> DataFrame transforms.

Every raw column arrives as a string. Each row gets a `reason` (null when the row is good);
bad rows go to quarantine with the original values as JSON. Duplicates collapse to the latest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

SEQ = "_seq"
INT_ID = "bigint"
STRING_ID = "string"
FUTURE_SLACK_S = 86_400


@dataclass(frozen=True)
class InteractionColumns:
    """Raw column names of the interactions; empty rating/timestamp means "not given"."""

    user_id: str
    item_id: str
    rating: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class ItemColumns:
    """Raw column names of the item catalogue; empty genres means "not given"."""

    item_id: str
    title: str
    genres: str = ""


def with_sequence(raw: DataFrame) -> DataFrame:
    """Number rows in input order, so "latest wins" can fall back on the order of the file."""
    return raw.withColumn(SEQ, F.monotonically_increasing_id())


def int_fraction(raw: DataFrame, columns: list[str]) -> dict[str, float]:
    """Return, per column, the fraction of non-empty values that parse as integers."""
    aggs = []
    for col in columns:
        value = F.trim(F.col(col))
        present = value.isNotNull() & (value != "")
        aggs.append(F.sum(present.cast("long")).alias(f"n_{col}"))
        aggs.append(F.sum(value.try_cast("bigint").isNotNull().cast("long")).alias(f"i_{col}"))
    row = raw.agg(*aggs).first()
    return {c: (row[f"i_{c}"] or 0) / row[f"n_{c}"] if row[f"n_{c}"] else 1.0 for c in columns}


def _parse_id(col: str, id_type: str) -> tuple[Column, Column]:
    """Return (parsed id, reason) for a raw id column."""
    value = F.trim(F.col(col))
    parsed = value.try_cast("bigint") if id_type == INT_ID else value
    reason = (
        F.when(value.isNull() | (value == ""), F.lit(f"missing {col}"))
        .when(
            parsed.isNull() & value.rlike(r"^[+-]?[0-9]+$"),
            F.concat(F.lit(f"{col} is outside the 64-bit integer range: "), value),
        )
        .when(parsed.isNull(), F.concat(F.lit(f"{col} is not an integer: "), value))
    )
    return parsed, reason


def _parse_rating(col: str) -> tuple[Column, Column]:
    if not col:
        return F.lit(1.0), F.lit(None).cast("string")
    value = F.trim(F.col(col))
    parsed = value.try_cast("double")
    reason = (
        F.when(value.isNull() | (value == ""), F.lit(f"missing {col}"))
        .when(parsed.isNull(), F.concat(F.lit(f"{col} is not a number: "), value))
        .when(F.isnan(parsed) | (F.abs(parsed) == float("inf")), F.lit(f"{col} is not finite"))
    )
    return parsed, reason


def _parse_timestamp(col: str, unit: str, now_s: int) -> tuple[Column, Column]:
    """Accept epoch numbers (in `unit`) or date-time strings; return epoch seconds."""
    if not col:
        return F.lit(0).cast("bigint"), F.lit(None).cast("string")
    value = F.trim(F.col(col))
    number = value.try_cast("double")
    scale = 1000.0 if unit == "ms" else 1.0
    seconds = F.coalesce(
        F.floor(number / scale).try_cast("bigint"),
        F.unix_seconds(F.try_to_timestamp(value)),
    )
    reason = (
        F.when(value.isNull() | (value == ""), F.lit(f"missing {col}"))
        .when(seconds.isNull(), F.concat(F.lit(f"{col} is not a time: "), value))
        .when(seconds < 0, F.lit(f"{col} is negative"))
        .when(seconds > now_s + FUTURE_SLACK_S, F.lit(f"{col} is in the future"))
    )
    return seconds, reason


def _raw_json(raw_columns: list[str]) -> Column:
    return F.to_json(F.struct(*[F.col(c) for c in raw_columns]))


def validate_interactions(
    raw: DataFrame,
    cols: InteractionColumns,
    id_types: dict[str, str],
    ts_unit: str = "s",
    now_s: int | None = None,
) -> DataFrame:
    """Parse raw interactions; return user_id, item_id, rating, timestamp, _seq, reason, row."""
    raw_columns = [c for c in raw.columns if c != SEQ]
    user, user_reason = _parse_id(cols.user_id, id_types["user_id"])
    item, item_reason = _parse_id(cols.item_id, id_types["item_id"])
    rating, rating_reason = _parse_rating(cols.rating)
    ts, ts_reason = _parse_timestamp(cols.timestamp, ts_unit, now_s or int(time.time()))
    return raw.select(
        user.alias("user_id"),
        item.alias("item_id"),
        rating.cast("double").alias("rating"),
        ts.cast("bigint").alias("timestamp"),
        F.col(SEQ),
        F.coalesce(user_reason, item_reason, rating_reason, ts_reason).alias("reason"),
        _raw_json(raw_columns).alias("row"),
    )


def validate_items(raw: DataFrame, cols: ItemColumns, item_id_type: str) -> DataFrame:
    """Parse a raw catalogue; return item_id, title, genres, _seq, reason, row."""
    raw_columns = [c for c in raw.columns if c != SEQ]
    item, reason = _parse_id(cols.item_id, item_id_type)
    genres = F.col(cols.genres) if cols.genres else F.lit(None).cast("string")
    return raw.select(
        item.alias("item_id"),
        F.col(cols.title).alias("title"),
        genres.alias("genres"),
        F.col(SEQ),
        reason.alias("reason"),
        _raw_json(raw_columns).alias("row"),
    )


def reject_unknown_items(interactions: DataFrame, items: DataFrame) -> DataFrame:
    """Mark good interactions whose item is not in the (good) catalogue."""
    known = items.select("item_id", F.lit(True).alias("_known")).dropDuplicates(["item_id"])
    joined = interactions.join(F.broadcast(known), "item_id", "left")
    reason = F.coalesce(
        F.col("reason"),
        F.when(F.col("_known").isNull(), F.lit("item_id not in the item catalogue")),
    )
    return joined.withColumn("reason", reason).drop("_known").select(interactions.columns)


def reason_kind(reason: Column) -> Column:
    """Return the reason without the offending value ("userId is not an integer: u7" ->
    "userId is not an integer"), so that rows rejected for one cause are counted together."""
    return F.regexp_replace(reason, r"(?s): .*$", "")


def quarantined(df: DataFrame, source: str) -> DataFrame:
    """Return the rejected rows as the quarantine table: source, reason, row."""
    return df.where(F.col("reason").isNotNull()).select(
        F.lit(source).alias("source"), "reason", "row"
    )


def latest(df: DataFrame, keys: list[str], order: list[str]) -> DataFrame:
    """Keep the good rows, one per key: the greatest by `order` (then the later input row)."""
    window = Window.partitionBy(*keys).orderBy(*[F.col(c).desc() for c in [*order, SEQ]])
    return (
        df.where(F.col("reason").isNull())
        .withColumn("_rank", F.row_number().over(window))
        .where(F.col("_rank") == 1)
        .drop("_rank", "reason", "row", SEQ)
    )
