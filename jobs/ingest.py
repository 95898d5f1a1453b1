"""Stage `ingest`: read interactions and the item catalogue, validate, quarantine, dedupe.

Reads MovieLens layout (`--data DIR`) or generic CSV/Parquet at any Hadoop URI with columns
mapped by config. Writes `interactions`, `items` (with the text to embed) and `quarantine`.
Fails, publishing nothing, when a required column is missing or too many rows are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType
from pyspark.storagelevel import StorageLevel

from jobs import validate as V
from jobs.config import JobConfig
from jobs.context import Context, Stage, StageResult
from jobs.errors import InputError
from schemas.tables import INTERACTIONS, ITEMS, QUARANTINE
from schemas.text import item_text, text_hash

MOVIELENS_INTERACTIONS = V.InteractionColumns("userId", "movieId", "rating", "timestamp")
MOVIELENS_ITEMS = V.ItemColumns("movieId", "title", "genres")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")


@dataclass(frozen=True)
class Source:
    """One input: where it is, its format and its column mapping."""

    uri: str
    format: str
    columns: V.InteractionColumns | V.ItemColumns

    @property
    def required(self) -> list[str]:
        return [c for c in vars(self.columns).values() if c]


def sources(config: JobConfig) -> tuple[Source, Source]:
    """Return the (interactions, items) sources the config names; the bundled sample by default."""
    if config.interactions and config.items:
        inter_cols = V.InteractionColumns(
            config.col_user_id, config.col_item_id, config.col_rating, config.col_timestamp
        )
        item_cols = V.ItemColumns(config.col_items_item_id, config.col_title, config.col_genres)
        return (
            Source(config.interactions, _format(config.interactions, config), inter_cols),
            Source(config.items, _format(config.items, config), item_cols),
        )
    data = config.data or str(Path(__file__).resolve().parent.parent / "data" / "ml-latest-small")
    return (
        Source(f"{data.rstrip('/')}/ratings.csv", "csv", MOVIELENS_INTERACTIONS),
        Source(f"{data.rstrip('/')}/movies.csv", "csv", MOVIELENS_ITEMS),
    )


def _format(uri: str, config: JobConfig) -> str:
    if config.input_format != "auto":
        return config.input_format
    return "csv" if uri.lower().endswith(CSV_SUFFIXES) else "parquet"


def read_raw(spark: SparkSession, source: Source, delimiter: str) -> DataFrame:
    """Read a source with every column as a string; fail clearly if absent or lacking columns."""
    local = "://" not in source.uri or source.uri.startswith("file://")
    if local and not Path(source.uri.removeprefix("file://")).exists():
        raise InputError(f"input not found: {source.uri}")
    try:
        if source.format == "csv":
            df = spark.read.options(
                header=True,
                sep=delimiter,
                quote='"',
                escape='"',
                inferSchema=False,
                mode="PERMISSIVE",
                encoding="UTF-8",
            ).csv(source.uri)
        else:
            df = spark.read.parquet(source.uri)
            df = df.select([F.col(c).cast("string").alias(c) for c in df.columns])
    except AnalysisException as exc:
        raise InputError(f"cannot read {source.uri}: {str(exc).splitlines()[0]}") from None
    _require_columns(df, source, delimiter)
    return V.with_sequence(df)


def _require_columns(df: DataFrame, source: Source, delimiter: str) -> None:
    missing = [c for c in source.required if c not in df.columns]
    if not missing:
        return
    if not df.columns:
        raise InputError(f"{source.uri} is empty (no header, no rows)")
    found = ", ".join(repr(c) for c in df.columns) or "none"
    hint = ""
    if len(df.columns) == 1 and any(d in df.columns[0] for d in ",;\t|" if d != delimiter):
        hint = f"; the file does not look {delimiter!r}-delimited (set NIGHTREC_CSV_DELIMITER)"
    elif source.format == "parquet" or not source.uri.endswith(".csv"):
        hint = "; map the columns with NIGHTREC_COL_* or the [columns] table of --config"
    raise InputError(f"{source.uri} has no column {missing[0]!r} (found: {found}){hint}")


def resolve_id_types(
    config: JobConfig, raw_inter: DataFrame, raw_items: DataFrame, inter: Source, items: Source
) -> dict[str, str]:
    """Decide each id's type: as configured, or integer when nearly all values are integers.

    MovieLens ids are integers by definition, so `--data` skips the scan that `auto` costs.
    """
    id_type = config.id_type
    if id_type == "auto" and not config.interactions:
        id_type = "int"
    if id_type != "auto":
        kind = V.INT_ID if id_type == "int" else V.STRING_ID
        return {"user_id": kind, "item_id": kind}
    floor = 1.0 - config.max_reject_fraction
    ic, tc = inter.columns, items.columns
    f_inter = V.int_fraction(raw_inter, [ic.user_id, ic.item_id])
    f_items = V.int_fraction(raw_items, [tc.item_id])
    item_int = min(f_inter[ic.item_id], f_items[tc.item_id]) >= floor
    return {
        "user_id": V.INT_ID if f_inter[ic.user_id] >= floor else V.STRING_ID,
        "item_id": V.INT_ID if item_int else V.STRING_ID,
    }


@F.pandas_udf(StructType([StructField("text", StringType()), StructField("hash", StringType())]))
def _item_text(title: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """Build each item's text to embed and its hash (both from schemas.text)."""
    texts = [item_text(t, g) for t, g in zip(title, genres, strict=True)]
    return pd.DataFrame({"text": texts, "hash": [text_hash(t) for t in texts]})


@dataclass(frozen=True)
class Ingested:
    """The clean tables to write, and every input row with its verdict (for counting)."""

    interactions: DataFrame
    items: DataFrame
    quarantine: DataFrame
    checked_interactions: DataFrame
    checked_items: DataFrame


def transform(
    raw_inter: DataFrame,
    raw_items: DataFrame,
    inter: Source,
    items: Source,
    id_types: dict[str, str],
    ts_unit: str,
) -> Ingested:
    """Validate both inputs, reject interactions on unknown items, collapse duplicates."""
    checked_items = V.validate_items(raw_items, items.columns, id_types["item_id"])
    good_items = V.latest(checked_items, ["item_id"], [])
    checked_inter = V.validate_interactions(raw_inter, inter.columns, id_types, ts_unit)
    checked_inter = V.reject_unknown_items(checked_inter, good_items)
    good_inter = V.latest(checked_inter, ["user_id", "item_id"], ["timestamp"])
    text = _item_text(F.col("title"), F.col("genres"))
    return Ingested(
        interactions=good_inter.select(*INTERACTIONS.column_names),
        items=good_items.select(
            "item_id", "title", text["text"].alias("text"), text["hash"].alias("text_hash")
        ),
        quarantine=V.quarantined(checked_inter, "interactions").unionByName(
            V.quarantined(checked_items, "items")
        ),
        checked_interactions=checked_inter,
        checked_items=checked_items,
    )


def run(ctx: Context) -> StageResult:
    """Read, validate and write the clean tables; record counts in the manifest."""
    config = ctx.config
    inter, items = sources(config)
    raw_inter = read_raw(ctx.spark, inter, config.csv_delimiter)
    raw_items = read_raw(ctx.spark, items, config.csv_delimiter)
    ctx.manifest.id_types = resolve_id_types(config, raw_inter, raw_items, inter, items)
    ctx.manifest.inputs = {"interactions": inter.uri, "items": items.uri}
    out = transform(raw_inter, raw_items, inter, items, ctx.id_types, config.timestamp_unit)
    checked = (out.checked_interactions, out.checked_items)
    for df in checked:  # counted and written from: read the inputs once
        df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        ctx.write(out.quarantine, QUARANTINE)
        rejected = _rejections(ctx, *checked)
        ctx.write(out.items, ITEMS)
        ctx.write(out.interactions, INTERACTIONS)
    finally:
        for df in checked:
            df.unpersist()
    totals = ctx.read(INTERACTIONS).agg(F.count("*"), F.countDistinct("user_id")).first()
    # Kept (their interactions count for CF), but their text embedding is that of "".
    textless = F.sum((F.col("text") == "").cast("long"))
    item_totals = ctx.read(ITEMS).agg(F.count("*"), textless).first()
    counts = {
        "interactions": totals[0],
        "users": totals[1],
        "items": item_totals[0],
        "items_without_text": item_totals[1] or 0,
    }
    ctx.manifest.counts.update(counts)
    ctx.manifest.rejected["duplicates_collapsed"] = (
        rejected["interactions_read"] - rejected["interactions_rejected"] - counts["interactions"]
    )
    if counts["interactions"] == 0:
        raise InputError(f"no usable interactions in {inter.uri}")
    return StageResult(
        counts["interactions"],
        f"{counts['items']} items ({counts['items_without_text']} without text), "
        f"{counts['users']} users, "
        f"{rejected['interactions_rejected'] + rejected['items_rejected']} rows quarantined",
    )


def _rejections(ctx: Context, checked_inter: DataFrame, checked_items: DataFrame) -> dict:
    """Count rows read and rejected per source; fail when a fraction passes the threshold."""
    rejected = ctx.manifest.rejected
    verdicts = checked_inter.select(F.lit("interactions").alias("source"), "reason").unionByName(
        checked_items.select(F.lit("items").alias("source"), "reason")
    )
    # Counted by cause, not by offending value: 60 distinct bad ids are one cause of 60 rows.
    kinds = verdicts.select("source", V.reason_kind(F.col("reason")).alias("reason"))
    counts = kinds.groupBy("source", "reason").count().collect()  # one pass over both
    reasons = [r for r in counts if r["reason"] is not None]
    rejected["reasons"] = {f"{r['source']}: {r['reason']}": r["count"] for r in reasons}
    # The catalogue first: its bad rows make interactions "unknown items"; name the cause.
    for name in ("items", "interactions"):
        source_uri = ctx.manifest.inputs[name]
        read = sum(r["count"] for r in counts if r["source"] == name)
        bad = sum(r["count"] for r in reasons if r["source"] == name)
        rejected[f"{name}_read"], rejected[f"{name}_rejected"] = read, bad
        if read == 0:
            raise InputError(f"{source_uri} holds no rows")
        if bad / read > ctx.config.max_reject_fraction:
            top = max((r for r in reasons if r["source"] == name), key=lambda r: r["count"])
            raise InputError(
                f"{bad} of {read} rows of {source_uri} rejected ({bad / read:.1%} > "
                f"NIGHTREC_MAX_REJECT_FRACTION={ctx.config.max_reject_fraction}); most common: "
                f"{top['reason']!r} ({top['count']} rows); see {ctx.run.path(QUARANTINE)}"
            )
    return rejected


STAGE = Stage("ingest", (), (INTERACTIONS, ITEMS, QUARANTINE), run)
