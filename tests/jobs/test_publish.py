"""Publishing to a real redis-server: list packing across batches, versions, garbage."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import redis

from jobs.publish import choose_version, collect_garbage, list_writer
from schemas.redis_layout import Keys, pack_list, unpack_list

ITEM_IDS = [10, 20, 30, 40]


def test_lists_straddling_arrow_batches_are_written_whole(redis_url):
    keys = Keys()
    batches = [
        pd.DataFrame(
            {
                "user_id": [1, 1, 2],
                "item": [30, 10, 40],
                "rank": [1, 2, 1],
                "score": [3.0, 2.0, 9.0],
            }
        ),
        pd.DataFrame(
            {
                "user_id": [2, 2, 3],
                "item": [20, 10, 10],
                "rank": [2, 3, 1],
                "score": [8.0, 7.0, 1.5],
            }
        ),
    ]
    writer = list_writer(redis_url, lambda u: keys.user("v1", u), ITEM_IDS, "user_id", batch=2)

    counts = list(writer(iter(batches)))

    assert counts[0]["written"].tolist() == [3]
    client = redis.Redis.from_url(redis_url)
    decoded = {u: unpack_list(client.get(keys.user("v1", u))) for u in (1, 2, 3)}
    assert {u: idx.tolist() for u, (idx, _) in decoded.items()} == {1: [2, 0], 2: [3, 1, 0], 3: [0]}
    assert decoded[2][1].tolist() == [9.0, 8.0, 7.0]


def test_garbage_collection_keeps_newest_versions_and_drops_orphans(redis_url):
    client, keys = redis.Redis.from_url(redis_url), Keys()
    value = pack_list(np.array([0]), np.array([1.0]))
    for version, published in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("orphan", None)):
        client.set(keys.user(version, 1), value)
        client.set(keys.meta(version), "{}")
        if published is not None:
            client.zadd(keys.versions, {version: published})
    client.set(keys.current, "c")
    client.set("other:app:key", "untouched")

    removed = collect_garbage(client, keys, keep=2)

    assert removed == 4  # a's and orphan's two keys each
    left = sorted(k.decode() for k in client.scan_iter("*"))
    assert left == sorted(
        [
            keys.current,
            keys.versions,
            "other:app:key",
            keys.user("b", 1),
            keys.meta("b"),
            keys.user("c", 1),
            keys.meta("c"),
        ]
    )
    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == ["b", "c"]


def test_a_version_an_api_worker_holds_survives_until_the_hold_expires(redis_url):
    client, keys = redis.Redis.from_url(redis_url), Keys()
    for version, t in (("gone", 1.0), ("served", 2.0), ("broken", 3.0), ("new", 4.0)):
        client.zadd(keys.versions, {version: t})
        client.set(keys.meta(version), "{}")
    client.set(keys.current, "new")
    now = time.time()
    client.zadd(keys.serving, {"served": now + 60, "gone": now - 1})  # "gone": expired hold

    collect_garbage(client, keys, keep=2)

    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == ["served", "broken", "new"]
    assert not client.exists(keys.meta("gone")) and client.exists(keys.meta("served"))
    assert client.zrange(keys.serving, 0, -1) == [b"served"]  # the expired hold is dropped


def test_current_version_survives_even_when_older_than_kept_ones(redis_url):
    client, keys = redis.Redis.from_url(redis_url), Keys()
    for version, t in (("old", 1.0), ("new1", 2.0), ("new2", 3.0)):
        client.zadd(keys.versions, {version: t})
        client.set(keys.meta(version), "{}")
    client.set(keys.current, "old")  # a rollback pointed back to it

    collect_garbage(client, keys, keep=1)

    assert client.exists(keys.meta("old")) and client.exists(keys.meta("new2"))
    assert not client.exists(keys.meta("new1"))


def test_a_published_run_id_gets_a_numbered_version(redis_url):
    client, keys = redis.Redis.from_url(redis_url), Keys()
    assert choose_version(client, keys, "r") == "r"
    client.zadd(keys.versions, {"r": 1.0})
    client.set(keys.meta("r.2"), "{}")  # an unpublished attempt also blocks its name

    assert choose_version(client, keys, "r") == "r.3"
