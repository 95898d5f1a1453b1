"""Version switch: a running app picks up a newly published version (index and lists)
without a restart and without a failed request, and keeps the old one when the new one
cannot be loaded. Uses its own key prefix in the serving Redis."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import weakref

import pytest
import redis

from jobs.pipeline import run_job
from schemas.redis_layout import Keys
from serving.app import create_app
from serving.cli import freeze_heap
from tests.movielens import write_movielens
from tests.serving import catalogue
from tests.serving.conftest import copy_version, job_config

pytestmark = pytest.mark.slow
PREFIX = "switch"
NEW_ID, NEW_TITLE, NEW_GENRES = catalogue.NEW_MOVIE


@pytest.fixture(scope="module")
def switch_app(spark, published):
    """An app on prefix "switch", where the test run v1 is published again (lists only)."""
    config = job_config(
        published.data,
        published.out,
        published.redis_url,
        "v1",
        stages="publish",
        redis_prefix=PREFIX,
    )
    run_job(config, spark=spark)
    app_config = published.config(redis_prefix=PREFIX, version_check_seconds=0.1)
    return create_app(app_config)  # background loading, as in production


def wait_for_version(client, name: str, seconds: float = 120.0) -> list[int]:
    """Ask continuously until `name` answers; return the statuses of every answer."""
    statuses, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = client.get("/v1/users/9/recommendations?n=3")
        statuses.append(response.status_code)
        if response.get_json()["version"] == name:
            return statuses
        time.sleep(0.05)
    raise AssertionError(f"version {name} not served after {seconds} s")


def test_a_version_that_cannot_be_loaded_leaves_the_old_one_served(switch_app, published):
    client, keys = switch_app.test_client(), Keys(PREFIX)
    store = redis.Redis.from_url(published.redis_url)
    assert client.get("/v1/users/9/recommendations").get_json()["version"] == "v1"
    meta = copy_version(store, keys, "v1", "broken")
    meta.update(run_id="gone", index_dir="/nonexistent/index")
    store.set(keys.meta("broken"), json.dumps(meta))
    store.set(keys.current, "broken")
    try:
        statuses = []
        deadline = time.monotonic() + 30
        while "could not be loaded" not in str(client.get("/readyz").get_json()["reason"]):
            statuses.append(client.get("/v1/search?q=zombies").status_code)
            assert time.monotonic() < deadline, "the failed load was never reported"
            time.sleep(0.05)
        ready = client.get("/readyz")
        body = ready.get_json()
        assert ready.status_code == 200 and set(statuses) <= {200}
        assert (body["serving_version"], body["published_version"]) == ("v1", "broken")
        assert body["stale"] is True and "no index for run 'gone'" in body["reason"]
        assert client.get("/v1/users/9/recommendations").get_json()["version"] == "v1"
        metrics = client.get("/metrics").get_data(as_text=True)
        assert "nightrec_version_stale 1.0" in metrics
        assert 'nightrec_version_loads_total{outcome="partial"}' in metrics
    finally:
        store.set(keys.current, "v1")
    time.sleep(0.2)
    assert client.get("/readyz").get_json()["stale"] is False


def test_a_newly_published_version_is_served_without_restart(
    switch_app, published, spark, tmp_path
):
    client = switch_app.test_client()
    assert client.get(f"/v1/items/{NEW_ID}/similar").status_code == 404
    movies = [*catalogue.movies(), catalogue.NEW_MOVIE]
    ratings = catalogue.ratings() + [(u, NEW_ID, 5.0, catalogue.T0 + 99_999) for u in (2, 3, 4)]
    data = write_movielens(tmp_path / "data", ratings, movies)
    run_job(
        job_config(data, tmp_path / "out", published.redis_url, "v2", redis_prefix=PREFIX),
        spark=spark,
    )

    statuses = wait_for_version(client, "v2")
    assert set(statuses) == {200}  # no failed request while the new version loaded
    similar = client.get(f"/v1/items/{NEW_ID}/similar?n=3")
    assert similar.status_code == 200 and similar.get_json()["version"] == "v2"
    found = client.get("/v1/search", query_string={"q": "Train to Busan zombies"}).get_json()
    assert found["version"] == "v2"
    assert found["items"][0] == {**found["items"][0], "item_id": NEW_ID, "title": NEW_TITLE}
    ready = client.get("/readyz").get_json()
    assert (ready["serving_version"], ready["index_items"]) == ("v2", len(catalogue.MOVIES) + 1)


def test_a_rollback_is_served_without_restart(switch_app, published):
    """`nightrec rollback` (a process of its own) moves the pointer back; the running app
    serves the old version's index and lists again with no failed request."""
    client = switch_app.test_client()
    wait_for_version(client, "v2")  # published by the test above
    env = {**os.environ, "NIGHTREC_REDIS_PREFIX": PREFIX}
    command = [sys.executable, "-m", "jobs.cli", "rollback", "v1", "--redis-url"]
    done = subprocess.run([*command, published.redis_url], env=env, capture_output=True, text=True)

    assert (done.returncode, done.stdout, done.stderr) == (0, "current version: v2 -> v1\n", "")
    statuses = wait_for_version(client, "v1")
    assert set(statuses) == {200}
    assert client.get(f"/v1/items/{NEW_ID}/similar").status_code == 404  # v1 never had it
    ready = client.get("/readyz").get_json()
    assert (ready["serving_version"], ready["index_items"]) == ("v1", len(catalogue.MOVIES))
    listing = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "versions", "--redis-url", published.redis_url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line.split()[0] for line in listing[1:]] == ["v2", "*"]  # newest first
    assert listing[2].split()[1] == "v1"


def test_a_version_switched_from_is_freed_with_the_worker_frozen(switch_app, published):
    """A worker of `nightrec serve` freezes what it holds once it is ready (`freeze_heap`),
    so the cycle collector never looks at the first version's objects again. A version
    switched from must then be freed by reference counting alone, or every switch would
    leak a version (its index included)."""
    client, keys = switch_app.test_client(), Keys(PREFIX)
    store = redis.Redis.from_url(published.redis_url)
    copy_version(store, keys, "v1", "v1-again")
    wait_for_version(client, "v1")
    serving = switch_app.extensions["nightrec"].versions.status.serving
    assert serving is not None and serving.search is not None
    # The version and its search assets (the index, the bulk of it); its catalogue is not
    # checked: the ListStore keeps the last few catalogues on purpose (serving.store).
    held = [weakref.ref(serving), weakref.ref(serving.search)]
    del serving
    freeze_heap()
    try:
        store.set(keys.current, "v1-again")
        wait_for_version(client, "v1-again")
        gc.collect()  # the requests' own cycles are young, so this frees them
        alive = [ref() is not None for ref in held]
    finally:
        gc.unfreeze()
        store.set(keys.current, "v1")
        store.delete(*store.scan_iter(match=keys.version_pattern("v1-again")))
    assert alive == [False, False]
