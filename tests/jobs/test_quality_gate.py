"""The quality gate: the verdict on known figures, and a degraded model blocked end to end."""

from __future__ import annotations

import json

import pytest
import redis

from jobs.pipeline import RunFailed, run_job
from jobs.quality_gate import gate_check, published_quality
from schemas.redis_layout import Keys
from serving.store import ListStore
from tests.jobs.test_pipeline import TINY_MODEL, TOP_N
from tests.movielens import checkerboard, job_config, write_movielens


def quality(ndcg: float, k: int = 10, protocol: str = "p") -> dict:
    return {"k": k, "protocol": protocol, "model": {"ndcg": ndcg}}


def test_a_drop_beyond_the_allowed_fraction_fails_with_the_figures():
    verdict = gate_check(quality(0.08), quality(0.10), "v1", max_drop=0.1)
    assert not verdict["passed"]
    assert verdict["reason"].startswith(
        "quality gate: ndcg@10 0.0800 is 20.0% below the published version v1's 0.1000 "
        "(at most 10% allowed); v1 stays current"
    )


def test_a_drop_within_the_allowed_fraction_passes():
    verdict = gate_check(quality(0.091), quality(0.10), "v1", max_drop=0.1)
    assert (verdict["passed"], verdict["reason"], verdict["previous_ndcg"]) == (True, None, 0.10)


@pytest.mark.parametrize(
    "old",
    [{}, quality(0.5, k=20), quality(0.5, protocol="other")],
    ids=["nothing published", "other K", "other protocol"],
)
def test_incomparable_versions_pass_and_say_why(old):
    verdict = gate_check(quality(0.01), old, "v1", max_drop=0.1)
    assert verdict["passed"] and verdict["reason"]


def test_published_quality_reads_the_current_versions_meta(redis_url):
    client, keys = redis.Redis.from_url(redis_url), Keys()
    assert published_quality(client, keys) == (None, {})
    client.set(keys.meta("v1"), json.dumps({"quality": quality(0.2)}))
    client.set(keys.current, "v1")
    assert published_quality(client, keys) == ("v1", quality(0.2))


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return write_movielens(tmp_path_factory.mktemp("board"), *checkerboard(12))


def config(data, out, redis_url, run_id, **extra):
    return job_config(
        data, out, redis_url, run_id, top_n=TOP_N, similar_n=4, **{**TINY_MODEL, **extra}
    )


# Huge L2 squeezes every user embedding to zero: the lists fall back to the item biases.
DEGRADED = {"cf_l2": 10_000.0}


@pytest.mark.slow
def test_a_degraded_model_is_blocked_and_the_old_version_stays_served(
    spark, redis_url, board, tmp_path
):
    good = run_job(config(board, tmp_path, redis_url, "good"), spark=spark)
    store = ListStore(redis.Redis.from_url(redis_url))
    served = [e.item_id for e in store.user_list("good", 1)]

    with pytest.raises(RunFailed, match="quality gate: ndcg@") as failure:
        run_job(config(board, tmp_path, redis_url, "bad", **DEGRADED), spark=spark)

    bad = failure.value.manifest
    assert bad.status == "failed" and bad.reason.startswith("publish: quality gate:")
    assert bad.quality["gate"]["previous_ndcg"] == good.quality["model"]["ndcg"]
    assert bad.quality["model"]["ndcg"] < 0.9 * good.quality["model"]["ndcg"]
    assert store.current_version() == "good"
    assert [e.item_id for e in store.user_list("good", 1)] == served
    assert store.user_list("bad", 1) is None

    forced = run_job(
        config(board, tmp_path, redis_url, "forced", force_publish="1", **DEGRADED),
        spark=spark,
    )
    assert forced.status == "published" and forced.quality["gate"]["forced"]
    assert store.current_version() == "forced"
