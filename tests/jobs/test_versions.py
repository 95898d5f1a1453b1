"""`nightrec versions` and `nightrec rollback` against a real redis-server."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from jobs.cli import main
from jobs.publish import collect_garbage, switch
from jobs.versions import RollbackError, format_versions, list_versions, rollback
from schemas.redis_layout import Keys, pack_list

KEYS = Keys()


def publish_by_hand(client: redis.Redis, version: str, at: float, users: int = 2, ndcg=0.1):
    """Write a complete small version through the layout and switch to it, as publish does."""
    client.set(KEYS.items(version), json.dumps({"item_ids": [1, 2], "titles": ["A", "B"]}))
    client.set(KEYS.popular(version), pack_list(np.array([0, 1]), np.array([2.0, 1.0])))
    for user in range(1, users + 1):
        client.set(KEYS.user(version, user), pack_list(np.array([user % 2]), np.array([at])))
    meta = {
        "version": version,
        "run_id": version,
        "users": users,
        "items": 2,
        "top_n": 1,
        "quality": {"k": 10, "model": {"ndcg": ndcg, "recall": 2 * ndcg}},
    }
    client.set(KEYS.meta(version), json.dumps(meta))
    switch(client, KEYS, version)
    client.zadd(KEYS.versions, {version: at})  # publish times the test controls


@pytest.fixture
def three_versions(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    for n, version in enumerate(("a", "b", "c"), start=1):
        publish_by_hand(client, version, at=1_700_000_000.0 + n, ndcg=n / 10)
    return client


def test_versions_are_listed_newest_first_with_their_metrics(three_versions, redis_url, capsys):
    infos = list_versions(three_versions, KEYS)

    assert [(i.version, i.current) for i in infos] == [("c", True), ("b", False), ("a", False)]
    assert infos[0].row()["metrics"] == {"ndcg": 0.3, "recall": 0.6}
    assert infos[2].row()["published_at"] == "2023-11-14 22:13:21"
    table = format_versions(infos).splitlines()
    assert table[0].split() == [
        "version",
        "published",
        "(UTC)",
        "users",
        "items",
        "top_n",
        "ndcg@10",
        "recall@10",
    ]
    assert table[1].split() == [
        "*",
        "c",
        "2023-11-14",
        "22:13:23",
        "2",
        "2",
        "1",
        "0.3000",
        "0.6000",
    ]
    assert main(["versions", "--redis-url", redis_url, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["users"], v["metrics"]["ndcg"]) for v in printed] == [
        ("c", 2, 0.3),
        ("b", 2, 0.2),
        ("a", 2, 0.1),
    ]


def test_no_version_is_said_plainly(redis_url, capsys):
    assert main(["versions", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out == "no published version\n"


def test_rollback_moves_the_pointer_and_garbage_collection_keeps_it(
    three_versions, redis_url, capsys
):
    assert main(["rollback", "a", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out == "current version: c -> a\n"
    assert three_versions.get(KEYS.current) == b"a"

    publish_by_hand(three_versions, "d", at=1_800_000_000.0)  # the next night
    assert three_versions.get(KEYS.current) == b"d"
    assert rollback(three_versions, KEYS, "a") == "d"  # still there: it was current at GC
    collect_garbage(three_versions, KEYS, keep=2)

    assert [i.version for i in list_versions(three_versions, KEYS)] == ["d", "c", "a"]
    assert three_versions.exists(KEYS.user("a", 1), KEYS.user("a", 2)) == 2
    assert not three_versions.exists(KEYS.meta("b"))


@pytest.mark.parametrize(
    ("version", "damage", "says"),
    [
        ("zz", None, "version 'zz' is not published (published: c, b, a)"),
        ("../a", None, "not a valid version id"),
        ("b", "user", "version 'b' is incomplete: 1 user lists in Redis, its meta counts 2"),
        ("b", "popular", "version 'b' is incomplete: nightrec:v:b:popular missing"),
        ("b", "meta", "version 'b' has no readable meta key (nightrec:v:b:meta)"),
    ],
)
def test_rollback_to_an_unusable_version_changes_nothing(
    three_versions, redis_url, capsys, version, damage, says
):
    if damage == "user":
        three_versions.delete(KEYS.user("b", 2))
    elif damage == "popular":
        three_versions.delete(KEYS.popular("b"))
    elif damage == "meta":
        three_versions.set(KEYS.meta("b"), b"{not json")
    before = {k: three_versions.dump(k) for k in three_versions.scan_iter("*")}

    with pytest.raises(RollbackError, match=r"\(|version"):
        rollback(three_versions, KEYS, version)
    assert main(["rollback", version, "--redis-url", redis_url]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    assert {k: three_versions.dump(k) for k in three_versions.scan_iter("*")} == before


def test_redis_down_is_one_line_without_the_password(capsys):
    assert main(["rollback", "a", "--redis-url", "redis://:topsecret@127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nightrec: Redis failed (ConnectionError") and err.count("\n") == 1
    assert "topsecret" not in err
