"""Fixtures of the API tests: a version published by the real job, and apps over it.

The published version lives in a redis-server of its own (not the session's `redis_server`,
which the per-test `redis_url` fixture of other tests flushes): the job runs once per test
session, and every test that reads the version can trust it is there.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from schemas.redis_layout import Keys
from serving.config import ServeConfig, build_serve_config
from serving.local_redis import free_port, server_command, wait_for
from tests.movielens import write_movielens
from tests.serving import catalogue

TOP_N = 20


@dataclass(frozen=True)
class Published:
    """A version the job published: where its files and its Redis are."""

    data: Path
    out: Path
    redis_url: str
    version: str

    def config(self, **changes: object) -> ServeConfig:
        """Return the API config for this version (flags as `nightrec serve` would get)."""
        flags = {"out": str(self.out), "redis_url": self.redis_url, **changes}
        return build_serve_config(flags, {})


class RedisProcess:
    """A redis-server of a test's own, which the test may stop and start again (same port,
    same data directory, so the data comes back)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            server_command(self.port, self.directory, daemonize=False),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.url)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def serving_redis(tmp_path_factory) -> Iterator[RedisProcess]:
    """A redis-server holding the published test version, for the whole session."""
    server = RedisProcess(tmp_path_factory.mktemp("serving-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def published(spark, serving_redis, tmp_path_factory) -> Published:
    """Run the real job once on the small catalogue; its version "v1" is current."""
    from jobs.pipeline import run_job

    data = write_movielens(
        tmp_path_factory.mktemp("movies"), catalogue.ratings(), catalogue.movies()
    )
    out = tmp_path_factory.mktemp("out")
    redis.Redis.from_url(serving_redis.url).flushall()
    run_job(job_config(data, out, serving_redis.url, "v1"), spark=spark)
    return Published(data, out, serving_redis.url, "v1")


def job_config(data: Path, out: Path, redis_url: str, run_id: str, **extra: object):
    """Return the job's config for the test catalogue."""
    from tests.movielens import job_config as small_job_config

    return small_job_config(data, out, redis_url, run_id, **{"top_n": TOP_N, **extra})


@pytest.fixture(scope="module")
def app(published):
    """An app over the published version (versions load within the request; deterministic)."""
    from serving.app import create_app

    return create_app(published.config(), background=False)


@pytest.fixture
def client(app):
    return app.test_client()


def dump_keys(client: redis.Redis, pattern: str = "*") -> dict[bytes, bytes]:
    """Return every key matching pattern with its serialised value (DUMP: any type)."""
    return {key: client.dump(key) for key in client.scan_iter(match=pattern)}


def restore_keys(client: redis.Redis, dump: dict[bytes, bytes]) -> int:
    """Write keys from `dump_keys` into a Redis (replacing what is there); return how many."""
    for key, value in dump.items():
        client.restore(key, 0, value, replace=True)
    return len(dump)


def copy_keys(source_url: str, target_url: str, pattern: str = "*") -> int:
    """Copy every key matching pattern from one Redis to another (DUMP/RESTORE)."""
    source, target = redis.Redis.from_url(source_url), redis.Redis.from_url(target_url)
    return restore_keys(target, dump_keys(source, pattern))


def copy_version(store: redis.Redis, keys: Keys, source: str, target: str) -> dict:
    """Publish version `source` again as `target` (same lists, same index); return its meta."""
    for key in store.scan_iter(match=keys.version_pattern(source)):
        new_key = key.decode().replace(f":v:{source}:", f":v:{target}:", 1)
        store.restore(new_key, 0, store.dump(key), replace=True)
    return json.loads(store.get(keys.meta(target)))
