"""End to end over HTTP: `nightrec serve` (gunicorn, two workers) on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
import redis

from benchmarks.loadgen import Load, Scenario, connections_per_process, start_scenario
from schemas.redis_layout import Keys
from tests.serving.conftest import RedisProcess, copy_keys, copy_version
from tests.serving.server import fetch, nightrec_serve, poll, workers

pytestmark = pytest.mark.slow


def test_nightrec_serve_answers_over_http(published, tmp_path):
    with nightrec_serve(published, tmp_path / "serve.out", workers=2, threads=2) as server:
        base = server.base
        status, body = fetch(f"{base}/readyz")
        assert status == 200 and json.loads(body)["serving_version"] == "v1"
        status, body = fetch(f"{base}/v1/users/1/recommendations?n=3")
        assert status == 200 and json.loads(body)["source"] == "personal"
        assert len(json.loads(body)["items"]) == 3
        status, body = fetch(f"{base}/v1/search?q=scary%20zombie%20movies&user_id=1")
        assert status == 200 and json.loads(body)["ranking"] == "personal"
        status, body = fetch(f"{base}/v1/search?n=0&q=x")
        assert status == 400 and json.loads(body)["error"]["parameter"] == "n"
        status, body = fetch(f"{base}/v1/search?q=" + "%D7%A9" * 600)  # 600 x "ש"
        assert status == 400 and json.loads(body)["error"]["parameter"] == "q"
        status, _ = fetch(f"{base}/v1/search?q=" + "a" * 10_000)  # refused by gunicorn itself
        assert status == 414
        for _ in range(6):  # reach both workers
            fetch(f"{base}/healthz")
        status, metrics = fetch(f"{base}/metrics")
        assert status == 200
        assert 'route="/v1/search"' in metrics and 'status="400"' in metrics
        assert 'role="serving"' in metrics and 'version="v1"' in metrics
    output = server.output()
    assert server.returncode == 0, output[-3000:]
    access = [json.loads(line) for line in output.splitlines() if line.startswith('{"method"')]
    assert {"route": "/v1/users/<user_id>/recommendations", "status": 200}.items() <= next(
        a for a in access if a["path"] == "/v1/users/1/recommendations"
    ).items()


def test_idle_workers_follow_the_pointer(published, tmp_path):
    """Workers that no request reaches still switch: only /metrics is asked here, which does
    not read the pointer, so each worker's watcher thread must notice the new version."""
    (tmp_path / "redis").mkdir()
    own_redis = RedisProcess(tmp_path / "redis").start()
    try:
        copy_keys(published.redis_url, own_redis.url)
        store, keys = redis.Redis.from_url(own_redis.url), Keys()
        copy_version(store, keys, published.version, "again")
        own = replace(published, redis_url=own_redis.url)
        with nightrec_serve(own, tmp_path / "serve.out", workers=2, threads=2) as server:
            poll("both workers up", lambda: len(workers(server.base)) == 2, 120.0)
            store.set(keys.current, "again")
            poll(
                "both workers on the new version",
                lambda: set(workers(server.base).values()) == {"again"},
            )
        assert server.returncode == 0, server.output()[-3000:]
    finally:
        own_redis.stop()


def test_a_burst_of_keep_alive_connections_is_shared_out_evenly(published, tmp_path):
    """32 connections opened at once, as a load balancer fills its pool: without
    `serving.balance` the worker that woke first took 28 to 32 of them (six bursts)."""
    with nightrec_serve(published, tmp_path / "serve.out", workers=2, threads=2) as server:
        port = urlsplit(server.base).port
        poll("both workers up", lambda: len(workers(server.base)) == 2, 120.0)
        with open_connections(port, 0) as probes:  # until both accept (out of start-up)
            poll("both workers accepting", lambda: len(probes.add(1)) == 2, 30.0)
        poll("the probes closed", lambda: connections_per_process(port) == [])

        with open_connections(port, 32) as burst:
            spread = burst.spread
    assert even(spread), spread
    assert server.returncode == 0, server.output()[-3000:]


def test_kept_alive_connections_move_to_a_restarted_worker(published, tmp_path):
    """A worker killed under load: its clients reconnect to the other one, which then holds
    every connection. Once the replacement is up, the one over its share closes connections
    after answers, and they come back to the replacement (without that: [16] for good)."""
    with nightrec_serve(published, tmp_path / "serve.out", workers=2, threads=2) as server:
        port = urlsplit(server.base).port
        poll("both workers up", lambda: len(workers(server.base)) == 2, 120.0)
        load = start_scenario(Scenario("healthz", port, ("/healthz",), 16), Load(0, 300, 10**8, 1))
        try:
            poll("both workers hold connections", lambda: len(connections_per_process(port)) == 2)
            os.kill(int(next(iter(workers(server.base)))), signal.SIGKILL)
            poll("the other worker holds them all", lambda: connections_per_process(port) == [16])
            poll("shared out again", lambda: even(connections_per_process(port)), 180.0)
        finally:
            load.stop()
            answered = load.result()
    assert answered.requests > 0 and answered.errors <= 16  # those of the killed worker at most


def even(spread: list[int]) -> bool:
    """Whether two processes hold connections, within 4 of each other."""
    return len(spread) == 2 and spread[0] - spread[1] <= 4


class Connections:
    """Keep-alive connections to a local port, each with one request answered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.clients: list[socket.socket] = []
        self.spread: list[int] = []

    def add(self, count: int) -> list[int]:
        """Open count more at once, send each a request, read the answers; return how the
        server's processes hold all of them (`connections_per_process`)."""
        new = [socket.create_connection(("127.0.0.1", self.port), 10) for _ in range(count)]
        self.clients += new
        for client in new:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        for client in new:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        self.spread = connections_per_process(self.port)
        return self.spread


@contextmanager
def open_connections(port: int, count: int) -> Iterator[Connections]:
    """Open count connections (see `Connections.add`); close every one at the end."""
    connections = Connections(port)
    try:
        connections.add(count)
        yield connections
    finally:
        for client in connections.clients:
            client.close()
