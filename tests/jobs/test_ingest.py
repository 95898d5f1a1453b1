"""Stage `ingest` on real Spark: validation, quarantine, dedupe, id types, clear failures."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jobs import ingest
from jobs.config import build_config
from jobs.context import Context
from jobs.errors import InputError
from jobs.run_store import RunDir
from schemas.manifest import RunManifest
from schemas.tables import INTERACTIONS, ITEMS, QUARANTINE
from tests.movielens import write_movielens

pytestmark = pytest.mark.slow
MOVIES = [
    (1, "Heat (1995)", "Action|Crime"),
    (2, "Alien (1979)", "Horror|Sci-Fi"),
    (3, "Up (2009)", "(no genres listed)"),
]


def run_ingest(spark, tmp_path, **flags) -> Context:
    config = build_config({"out": str(tmp_path / "out"), **flags}, {})
    ctx = Context(config, spark, RunDir(tmp_path / "out", "t"), RunManifest("t"))
    ingest.run(ctx)
    return ctx


def rows(ctx: Context, table) -> list[dict]:
    return [r.asDict() for r in ctx.read(table).collect()]


def test_bad_rows_are_quarantined_with_their_reason(spark, tmp_path):
    ratings = [
        (1, 1, 4.0, 100),
        (1, 2, 3.0, 100),
        (2, 1, 5.0, 100),  # good
        ("", 1, 4.0, 100),
        (1, "x9", 4.0, 100),
        (1, 3, "NaN", 100),
        (2, 2, "inf", 100),
        (2, 3, 4.0, "yesterday"),
        (3, 1, 4.0, -5),
        (3, 2, 4.0, 9_999_999_999),
        (3, 77, 4.0, 100),
        (3, 3, "", 100),
    ]
    data = write_movielens(tmp_path / "ml", ratings, MOVIES)

    ctx = run_ingest(spark, tmp_path, data=str(data), max_reject_fraction=0.9)

    reasons = {r["reason"]: json.loads(r["row"]) for r in rows(ctx, QUARANTINE)}
    assert sorted(reasons) == sorted(
        [
            "missing userId",
            "movieId is not an integer: x9",
            "rating is not finite",
            "timestamp is not a time: yesterday",
            "timestamp is negative",
            "timestamp is in the future",
            "item_id not in the item catalogue",
            "missing rating",
        ]
    )
    assert reasons["movieId is not an integer: x9"] == {
        "userId": "1",
        "movieId": "x9",
        "rating": "4.0",
        "timestamp": "100",
    }
    assert len(rows(ctx, INTERACTIONS)) == 3
    assert ctx.manifest.rejected["interactions_rejected"] == 9
    assert ctx.manifest.id_types == {"user_id": "bigint", "item_id": "bigint"}


def test_duplicates_collapse_to_the_latest(spark, tmp_path):
    ratings = [(1, 1, 2.0, 10), (1, 1, 5.0, 30), (1, 1, 3.0, 20), (1, 2, 1.0, 5), (1, 2, 4.0, 5)]
    data = write_movielens(tmp_path / "ml", ratings, MOVIES)

    ctx = run_ingest(spark, tmp_path, data=str(data))

    got = sorted((r["item_id"], r["rating"], r["timestamp"]) for r in rows(ctx, INTERACTIONS))
    assert got == [(1, 5.0, 30), (2, 4.0, 5)]  # equal times: the later row of the file wins
    assert ctx.manifest.rejected["duplicates_collapsed"] == 3


def test_item_text_is_cleaned(spark, tmp_path):
    data = write_movielens(tmp_path / "ml", [(1, 1, 4.0, 1)], MOVIES)

    ctx = run_ingest(spark, tmp_path, data=str(data))

    texts = {r["item_id"]: r["text"] for r in rows(ctx, ITEMS)}
    assert texts == {1: "Heat Action Crime", 2: "Alien Horror Sci-Fi", 3: "Up"}


def test_too_many_rejected_rows_fail_the_run(spark, tmp_path):
    ratings = [(1, 1, 4.0, 1), (1, 2, "bad", 1), (2, 2, "bad", 1)]
    data = write_movielens(tmp_path / "ml", ratings, MOVIES)

    with pytest.raises(InputError, match=r"2 of 3 rows .* rejected .*rating is not a number"):
        run_ingest(spark, tmp_path, data=str(data))


def test_missing_column_and_wrong_delimiter_are_named(spark, tmp_path):
    data = tmp_path / "ml"
    write_movielens(data, [(1, 1, 4.0, 1)], MOVIES)
    (data / "ratings.csv").write_text("userId;movieId;rating;timestamp\n1;1;4.0;1\n")

    with pytest.raises(InputError, match=r"no column 'userId' .*not look ','-delimited"):
        run_ingest(spark, tmp_path, data=str(data))


def test_missing_file_is_named(spark, tmp_path):
    with pytest.raises(InputError, match=r"input not found: .*nowhere/ratings.csv"):
        run_ingest(spark, tmp_path, data=str(tmp_path / "nowhere"))


def test_string_ids_from_mapped_parquet_are_kept_as_given(spark, tmp_path):
    inter = pd.DataFrame(
        {
            "uid": ["u-1", "u-1", "u-2"],
            "sku": ["A7", "b:8", "A7"],
            "stars": [1.0, 2.0, 3.0],
            "ts": ["2024-01-01T00:00:00", "5", "6"],
        }
    )
    items = pd.DataFrame({"sku": ["A7", "b:8"], "name": ["Red shoe", "Blue hat"]})
    inter.to_parquet(tmp_path / "inter.parquet")
    items.to_parquet(tmp_path / "items.parquet")

    ctx = run_ingest(
        spark,
        tmp_path,
        interactions=str(tmp_path / "inter.parquet"),
        items=str(tmp_path / "items.parquet"),
        col_user_id="uid",
        col_item_id="sku",
        col_rating="stars",
        col_timestamp="ts",
        col_items_item_id="sku",
        col_title="name",
        col_genres="",
    )

    assert ctx.manifest.id_types == {"user_id": "string", "item_id": "string"}
    got = sorted((r["user_id"], r["item_id"], r["timestamp"]) for r in rows(ctx, INTERACTIONS))
    assert got == [("u-1", "A7", 1704067200), ("u-1", "b:8", 5), ("u-2", "A7", 6)]
