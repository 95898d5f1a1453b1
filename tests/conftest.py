"""Shared fixtures: one local SparkSession per test run, one real redis-server per test run
(flushed around every test that uses it), and small known-answer data sets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession shared by the whole run (start-up costs seconds)."""
    from jobs.config import build_config
    from jobs.spark import build_session

    config = build_config(
        {"spark_master": "local[2]", "spark_partitions": 4, "spark_class_cache": ""}
    )
    session = build_session(config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for this test run only."""
    from serving.local_redis import free_port, server_command, wait_for

    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        server_command(port, directory, daemonize=False),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, empty at the start and the end of the test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield redis_server
    client.flushall()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real three-node Redis Cluster with a password, for this test run only."""
    from tests.redis_cluster import RedisClusterProcesses

    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
