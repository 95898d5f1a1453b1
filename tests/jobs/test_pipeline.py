"""End to end: MovieLens-format files -> every stage -> Redis and Parquet, on real engines."""

from __future__ import annotations

import pytest
import redis

from jobs.config import build_config
from jobs.pipeline import RunFailed, run_job
from schemas.redis_layout import Keys
from serving.store import ListStore
from tests.movielens import checkerboard, write_movielens

pytestmark = pytest.mark.slow
SIZE, TOP_N = 12, 3


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory):
    ratings, movies = checkerboard(SIZE)
    return write_movielens(tmp_path_factory.mktemp("board"), ratings, movies)


def config(data, out, redis_url, run_id, **extra):
    flags = {
        "data": str(data),
        "out": str(out),
        "redis_url": redis_url,
        "run_id": run_id,
        "top_n": TOP_N,
        "eval_holdout": 1,
        "similar_n": 4,
        **extra,
    }
    return build_config(flags, {})


def parquet_lists(spark, out, run_id):
    rows = spark.read.parquet(f"{out}/runs/{run_id}/recommendations").collect()
    lists: dict = {}
    for row in sorted(rows, key=lambda r: (r.user_id, r.rank)):
        lists.setdefault(row.user_id, []).append(row.item_id)
    return lists


def test_checkerboard_end_to_end(spark, redis_url, board_dir, tmp_path):
    manifest = run_job(config(board_dir, tmp_path, redis_url, "r1"), spark=spark)

    assert manifest.status == "published" and manifest.version == "r1"
    lists = parquet_lists(spark, tmp_path, "r1")
    ratings, _ = checkerboard(SIZE)
    seen = {(u, i) for u, i, _, _ in ratings}
    assert sorted(lists) == list(range(1, SIZE + 1))
    for user, items in lists.items():
        assert len(items) == TOP_N  # min(N, unseen): every user has SIZE/2 + 1 unseen items
        assert not any((user, item) in seen for item in items)
        assert items[0] == 100 + user  # the withheld diagonal item, the only one of its parity
    store = ListStore(redis.Redis.from_url(redis_url))
    assert store.current_version() == "r1"
    for user, items in lists.items():
        assert [e.item_id for e in store.user_list("r1", user)] == items
    assert store.user_list("r1", 10_000) is None
    assert store.similar_list("r1", 101)[0].item_id != 101
    assert store.catalogue("r1").titles[0] == "Film number 1 (1991)"


def test_rerun_reuses_embeddings_and_collects_old_versions(spark, redis_url, board_dir, tmp_path):
    first = run_job(config(board_dir, tmp_path, redis_url, "a"), spark=spark)
    second = run_job(config(board_dir, tmp_path, redis_url, "b"), spark=spark)
    third = run_job(config(board_dir, tmp_path, redis_url, "c", keep_versions=2), spark=spark)

    assert first.counts["items_encoded"] == SIZE
    assert second.counts["items_encoded"] == 0 and second.counts["items_reused"] == SIZE
    assert third.counts["items_encoded"] == 0
    client, keys = redis.Redis.from_url(redis_url), Keys()
    assert client.get(keys.current) == b"c"
    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == ["b", "c"]
    versions = {keys.version_of(k.decode()) for k in client.scan_iter(keys.version_pattern())}
    assert versions == {"b", "c"}


def test_failed_run_leaves_published_version_untouched(spark, redis_url, board_dir, tmp_path):
    run_job(config(board_dir, tmp_path, redis_url, "good"), spark=spark)
    client = redis.Redis.from_url(redis_url)
    before = {k: client.get(k) for k in client.scan_iter("*") if client.type(k) == b"string"}
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ratings.csv").write_text("userId,movieId,rating\n1,101,4.0\n")
    (broken / "movies.csv").write_text((board_dir / "movies.csv").read_text())

    with pytest.raises(RunFailed, match="no column 'timestamp'") as failure:
        run_job(config(broken, tmp_path, redis_url, "bad"), spark=spark)

    assert failure.value.manifest.status == "failed"
    after = {k: client.get(k) for k in client.scan_iter("*") if client.type(k) == b"string"}
    assert after == before
    assert client.get(Keys().current) == b"good"


def test_rerunning_a_published_run_id_writes_a_fresh_version(spark, redis_url, board_dir, tmp_path):
    run_job(config(board_dir, tmp_path, redis_url, "same"), spark=spark)
    again = run_job(config(board_dir, tmp_path, redis_url, "same"), spark=spark)

    assert again.version == "same.2"
    assert redis.Redis.from_url(redis_url).get(Keys().current) == b"same.2"
    assert parquet_lists(spark, tmp_path, "same")[1][0] == 101
