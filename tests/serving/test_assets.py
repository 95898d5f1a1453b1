"""The run files the API loads besides the index: every user's history (the CSR layout that
also gives search its seen items) and the run's quality record. Known-answer data, no job."""

from __future__ import annotations

import json

import numpy as np

from schemas.manifest import RunManifest
from serving.assets import read_quality
from serving.histories import build_histories

# (user_id, index row, rating, epoch seconds); row -1 is an item the index does not hold
INTERACTIONS = [
    (7, 4, 3.5, 300),
    (2, 0, 5.0, 100),
    (7, 1, 2.0, 500),
    (2, 3, 1.0, 900),
    (7, 9, 4.0, 500),
    (2, 2, 4.5, 100),
    (11, -1, 5.0, 50),
    (7, 6, 1.5, 100),
]


def histories(rows=INTERACTIONS):
    users, index_rows, ratings, times = zip(*rows, strict=True)
    return build_histories(list(users), index_rows, ratings, times)


def test_history_is_most_recent_first_ties_by_row():
    packed = histories()
    recent = packed.recent("7", 10)
    assert recent.rows.tolist() == [1, 9, 4, 6]  # 500 (rows 1, 9), 300, 100
    assert recent.ratings.tolist() == [2.0, 4.0, 3.5, 1.5]
    assert recent.times.tolist() == [500, 500, 300, 100]
    assert recent.total == 4
    two = packed.recent("2", 2)
    assert (two.rows.tolist(), two.times.tolist(), two.total) == ([3, 0], [900, 100], 3)


def test_users_are_in_id_order_and_unknown_users_have_nothing():
    packed = histories()
    assert packed.sample_users(10) == ["2", "7"]  # user 11 rated only an item the index lacks
    assert packed.sample_users(1) == ["2"]
    for user in ("11", "nobody", "07"):
        assert packed.count(user) == 0
        assert packed.recent(user, 5).rows.tolist() == []
        assert packed.seen_rows(user).tolist() == []


def test_seen_rows_are_sorted_views_for_search():
    packed = histories()
    assert packed.seen_rows("7").tolist() == [1, 4, 6, 9]
    assert packed.seen_rows("2").tolist() == [0, 2, 3]
    seen = packed.seen_rows("7")
    assert np.shares_memory(seen, packed.rows) and not seen.flags.writeable


def test_the_layout_is_compact():
    packed = histories()
    assert (packed.rows.dtype, packed.ratings.dtype, packed.times.dtype) == (
        np.int32,
        np.float32,
        np.uint32,
    )
    assert packed.starts.tolist() == [0, 3, 7]
    late = histories([(1, 0, 1.0, 2**33)])  # a time past 2106 does not fit 32 bits
    assert late.times.dtype == np.int64 and late.recent("1", 1).times.tolist() == [2**33]


def test_string_user_ids_and_no_interactions():
    packed = histories([("b", 1, 1.0, 0), ("a", 2, 1.0, 0), ("b", 0, 1.0, 0)])
    assert packed.sample_users(5) == ["a", "b"]
    assert packed.recent("b", 5).rows.tolist() == [0, 1]
    empty = build_histories([], [], [], [])
    assert empty.sample_users(5) == [] and empty.count("a") == 0


QUALITY = {"k": 10, "model": {"ndcg": 0.25, "recall": 0.5}, "popularity": {"ndcg": 0.125}}


def write_run(out, run_id, quality):
    run = out / "runs" / run_id
    (run / "index").mkdir(parents=True)
    (run / "manifest.json").write_text(RunManifest(run_id=run_id, quality=quality).to_json())
    return run


def test_quality_comes_from_the_runs_manifest(tmp_path):
    write_run(tmp_path, "r1", QUALITY)
    meta = {"run_id": "r1", "quality": {"k": 5}}
    assert read_quality(meta, tmp_path) == QUALITY


def test_quality_falls_back_to_the_meta_without_the_runs_files(tmp_path):
    meta = {"run_id": "r2", "quality": {"k": 5, "model": {"ndcg": 0.5}}}
    assert read_quality(meta, tmp_path) == meta["quality"]
    run = write_run(tmp_path, "r3", QUALITY)
    (run / "manifest.json").write_text("{not json")
    assert read_quality({"run_id": "r3", "quality": {"k": 3}}, tmp_path) == {"k": 3}
    (run / "manifest.json").write_text(json.dumps({"run_id": "r3", "quality": [1, 2]}))
    assert read_quality({"run_id": "r3"}, tmp_path) == {}
    assert read_quality({}, tmp_path) == {}
