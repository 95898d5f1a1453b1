"""Redis going away and coming back: 503 JSON while it is down, answers again without a
restart once it is back (a redis-server of the test's own, stopped and started again)."""

from __future__ import annotations

import time

import pytest

from serving.app import create_app
from tests.serving.conftest import RedisProcess, copy_keys

pytestmark = pytest.mark.slow


def test_redis_down_is_a_503_and_the_app_recovers(published, tmp_path):
    server = RedisProcess(tmp_path).start()
    try:
        assert copy_keys(published.redis_url, server.url) > 0
        config = published.config(
            redis_url=server.url, redis_timeout=0.2, version_check_seconds=0.05
        )
        client = create_app(config, background=False).test_client()
        assert client.get("/v1/users/1/recommendations").status_code == 200

        server.stop()
        time.sleep(0.1)
        for path in ("/v1/users/1/recommendations", "/v1/items/1794/similar"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.get_json()["error"]["code"] == "unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["redis"] is False and ready.get_json()["ready"] is False
        # search needs no Redis once the version is loaded: it keeps answering
        assert client.get("/v1/search?q=zombies").status_code == 200

        server.start()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        response = client.get("/v1/users/1/recommendations")
        assert response.status_code == 200
        assert response.get_json()["source"] == "personal"
    finally:
        server.stop()
