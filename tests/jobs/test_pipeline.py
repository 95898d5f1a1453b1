"""End to end: MovieLens-format files -> every stage -> Redis and Parquet, on real engines."""

from __future__ import annotations

import pytest
import redis

from jobs.config import build_config
from jobs.pipeline import RunFailed, run_job
from schemas.redis_layout import Keys
from serving.store import ListStore
from tests.conftest import SAMPLE
from tests.movielens import checkerboard, job_config, write_movielens

pytestmark = pytest.mark.slow
SIZE, TOP_N = 12, 3
# The model's defaults suit thousands of users; 12 users need more steps and less shrinkage.
TINY_MODEL = {"cf_dim": 4, "cf_epochs": 100, "cf_l2": 0.1, "cf_learning_rate": 0.05}


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory):
    ratings, movies = checkerboard(SIZE)
    return write_movielens(tmp_path_factory.mktemp("board"), ratings, movies)


def config(data, out, redis_url, run_id, **extra):
    return job_config(
        data, out, redis_url, run_id, top_n=TOP_N, similar_n=4, **{**TINY_MODEL, **extra}
    )


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
    third = run_job(
        config(board_dir, tmp_path, redis_url, "c", keep_versions=2, keep_runs=1), spark=spark
    )

    assert first.counts["items_encoded"] == SIZE
    assert second.counts["items_encoded"] == 0 and second.counts["items_reused"] == SIZE
    assert third.counts["items_encoded"] == 0
    client, keys = redis.Redis.from_url(redis_url), Keys()
    assert client.get(keys.current) == b"c"
    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == ["b", "c"]
    versions = {keys.version_of(k.decode()) for k in client.scan_iter(keys.version_pattern())}
    assert versions == {"b", "c"}
    # keep_runs=1 deletes run a; b stays while version b, kept in Redis, reads its index
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["b", "c"]


def test_changed_item_text_is_the_only_one_encoded(spark, redis_url, board_dir, tmp_path):
    run_job(config(board_dir, tmp_path, redis_url, "before"), spark=spark)
    ratings, movies = checkerboard(SIZE)
    movies[3] = (movies[3][0], "A completely new title (2001)", movies[3][2])
    changed = write_movielens(tmp_path / "changed", ratings, movies)

    after = run_job(config(changed, tmp_path, redis_url, "after"), spark=spark)

    assert (after.counts["items_encoded"], after.counts["items_reused"]) == (1, SIZE - 1)


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


def test_bundled_sample_every_user_gets_n_unseen_and_redis_matches_parquet(
    spark, redis_url, tmp_path
):
    manifest = run_job(
        build_config(
            {
                "data": str(SAMPLE),
                "out": str(tmp_path),
                "redis_url": redis_url,
                "run_id": "ml",
                "top_n": 10,
            },
            {},
        ),
        spark=spark,
    )

    assert manifest.quality["beats_popularity"]
    assert manifest.quality["model"]["recall"] > manifest.quality["popularity"]["recall"]
    seen = spark.read.parquet(f"{tmp_path}/runs/ml/interactions").select("user_id", "item_id")
    recs = spark.read.parquet(f"{tmp_path}/runs/ml/recommendations")
    assert recs.join(seen, ["user_id", "item_id"]).count() == 0
    per_user = {r.user_id: r["count"] for r in recs.groupBy("user_id").count().collect()}
    assert len(per_user) == 610 and set(per_user.values()) == {10}
    store = ListStore(redis.Redis.from_url(redis_url))
    lists = parquet_lists(spark, tmp_path, "ml")
    for user in lists:
        assert [e.item_id for e in store.user_list("ml", user)] == lists[user]
    _search_the_sample_for_zombies(tmp_path, redis_url)


def _search_the_sample_for_zombies(out, redis_url):
    """The API over the sample's version: "scary zombie movies" gives horror titles, zombie
    films among the first, and a user's personal answer leaves out what the user has seen."""
    import csv

    from serving.app import create_app
    from serving.config import build_serve_config

    with (SAMPLE / "movies.csv").open(newline="", encoding="utf-8") as handle:
        genres = {int(row["movieId"]): row["genres"] for row in csv.DictReader(handle)}
    with (SAMPLE / "ratings.csv").open(newline="", encoding="utf-8") as handle:
        seen: dict[int, set[int]] = {}
        for row in csv.DictReader(handle):
            seen.setdefault(int(row["userId"]), set()).add(int(row["movieId"]))
    config = build_serve_config({"out": str(out), "redis_url": redis_url}, {})
    client = create_app(config, background=False).test_client()
    query = {"q": "scary zombie movies", "n": 10}

    semantic = client.get("/v1/search", query_string=query).get_json()["items"]
    # Title words count too: "Scary Movie 2" (tagged Comedy only) comes about 7th.
    assert all("Horror" in genres[i["item_id"]] for i in semantic[:5])
    assert sum("zombie" in i["title"].lower() for i in semantic) >= 3
    found = {i["item_id"] for i in semantic}
    fan = max(sorted(seen), key=lambda user: len(seen[user] & found))
    personal = client.get("/v1/search", query_string={**query, "user_id": fan}).get_json()
    assert personal["ranking"] == "personal" and len(seen[fan] & found) >= 3
    assert not {i["item_id"] for i in personal["items"]} & seen[fan]
    assert all("Horror" in genres[i["item_id"]] for i in personal["items"][:5])
    # Re-ranked: the fan's unseen matches within 0.1 of the best match, at least n of them.
    wide = client.get("/v1/search", query_string={**query, "n": 60}).get_json()["items"]
    unseen = [i for i in wide if i["item_id"] not in seen[fan]]
    head = [i for i in unseen if i["score"] >= wide[0]["score"] - 0.1]
    head = head if len(head) >= 10 else unseen[:10]
    assert {i["item_id"] for i in personal["items"]} <= {i["item_id"] for i in head}
