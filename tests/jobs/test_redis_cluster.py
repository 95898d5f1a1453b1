"""The job publishes to a real Redis Cluster (password in the URL) and the API reads it."""

from __future__ import annotations

import pytest
import redis

from jobs.pipeline import run_job
from schemas.redis_layout import Keys
from serving.app import create_app
from serving.config import build_serve_config
from tests.jobs.test_pipeline import SIZE, config, parquet_lists
from tests.movielens import checkerboard, write_movielens

pytestmark = pytest.mark.slow


def node_keys(cluster) -> dict[int, list[str]]:
    """Return every key of the cluster, by the port of the node holding it."""
    found = {}
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port, password=cluster.password)
        found[port] = sorted(k.decode() for k in node.scan_iter("*"))
    return found


def cluster_secret(path, cluster) -> bool:
    """Say whether a file holds the cluster's password (in plain or URL-encoded form)."""
    data = path.read_bytes()
    return any(s.encode() in data for s in (cluster.password, cluster.password.replace(" ", "%20")))


def test_publish_to_a_cluster_and_serve_from_it(spark, redis_cluster, tmp_path):
    board = write_movielens(tmp_path / "board", *checkerboard(SIZE))
    url, keys = redis_cluster.url, Keys()

    run_job(config(board, tmp_path, url, "c1", redis_cluster=True), spark=spark)

    by_node = node_keys(redis_cluster)
    assert all(by_node.values())  # the version's keys spread over all three primaries
    run_files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert run_files and not [p for p in run_files if cluster_secret(p, redis_cluster)]
    control = [p for p, ks in by_node.items() if keys.current in ks and keys.versions in ks]
    assert len(control) == 1  # the hash tag keeps pointer and versions on one node
    serve = build_serve_config({"out": str(tmp_path), "redis_url": url, "redis_cluster": "1"})
    api = create_app(serve, background=False).test_client()
    expected = parquet_lists(spark, tmp_path, "c1")
    for user in (1, 2, SIZE):
        body = api.get(f"/v1/users/{user}/recommendations?n=3").get_json()
        assert (body["version"], body["source"]) == ("c1", "personal")
        assert [i["item_id"] for i in body["items"]] == expected[user]
        assert body["items"][0]["item_id"] == 100 + user
    assert api.get("/readyz").status_code == 200

    run_job(config(board, tmp_path, url, "c2", redis_cluster=True, keep_versions=1), spark=spark)

    assert api.get("/v1/users/1/recommendations?n=3").get_json()["version"] == "c2"
    left = [k for ks in node_keys(redis_cluster).values() for k in ks]
    assert not [k for k in left if keys.version_of(k) == "c1"]  # collected on every node
    assert len([k for k in left if keys.version_of(k) == "c2"]) == 2 * SIZE + 3
