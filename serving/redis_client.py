"""Redis clients for a URL: one server or a Redis Cluster, password and TLS taken from the URL.

Both the job (publish, on the driver and in Spark's Python workers) and the API build their
clients here, so a URL means the same thing on both sides:

    redis://[[user]:password@]host:port/0          plain TCP
    rediss://[[user]:password@]host:port/0?ssl_ca_certs=/etc/ca.pem   TLS (query options are
                                                   passed to redis-py: ssl_ca_certs,
                                                   ssl_certfile, ssl_keyfile, ssl_cert_reqs)

With `cluster=True` the URL names any one node of a Redis Cluster; the client discovers the
others and routes every key to its slot (database 0 only, as Redis Cluster has no other).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeAlias

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry


class PerThreadClient:
    """A client that gives each thread a single-connection client of its own.

    redis-py's pooled client takes a connection from its pool and gives it back on every
    command (locks and bookkeeping): about a third of the CPU of a GET. A gunicorn thread
    answers one request at a time, so it can keep one connection instead, which redis-py
    supports as `single_connection_client`. Commands are those of `redis.Redis` (looked up
    on the calling thread's client); timeouts and the retry after a broken connection are
    the same. A server holds one connection per thread that has used it.
    """

    def __init__(self, make_client: Callable[[], redis.Redis]) -> None:
        self._make_client = make_client
        self._local = threading.local()

    def thread_client(self) -> redis.Redis:
        """Return this thread's client (connecting it on first use)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make_client()
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.thread_client(), name)


RedisClient: TypeAlias = redis.Redis | RedisCluster | PerThreadClient


def connect(
    url: str,
    *,
    cluster: bool = False,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    retries: int = 1,
    per_thread: bool = False,
) -> RedisClient:
    """Return a client for `url`.

    Args:
        url: redis:// or rediss:// URL (unix:// for a single server only).
        cluster: the URL names a node of a Redis Cluster.
        timeout: seconds a command may take.
        connect_timeout: seconds a connection may take to open.
        retries: retries of a command that failed on a broken connection (a pooled connection
            after a Redis restart or a cluster failover).
        per_thread: one connection per thread (`PerThreadClient`) instead of a shared
            pool; for servers whose threads each answer one request at a time. Ignored
            with `cluster`: a cluster client keeps a pool per node.

    Raises:
        redis.RedisError: in cluster mode, no node of the cluster answers (the client reads
            the slot map when it is built).
    """
    retry = Retry(NoBackoff(), retries)
    if cluster:
        return RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, retry=retry
        )
    options = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout}
    if per_thread:
        return PerThreadClient(
            lambda: redis.Redis.from_url(url, **options, retry=retry, single_connection_client=True)
        )
    return redis.Redis.from_url(url, **options, retry=retry)
