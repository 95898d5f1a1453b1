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

from typing import TypeAlias

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

RedisClient: TypeAlias = redis.Redis | RedisCluster


def connect(
    url: str,
    *,
    cluster: bool = False,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    retries: int = 1,
) -> RedisClient:
    """Return a client for `url`.

    Args:
        url: redis:// or rediss:// URL (unix:// for a single server only).
        cluster: the URL names a node of a Redis Cluster.
        timeout: seconds a command may take.
        connect_timeout: seconds a connection may take to open.
        retries: retries of a command that failed on a broken connection (a pooled connection
            after a Redis restart or a cluster failover).

    Raises:
        redis.RedisError: in cluster mode, no node of the cluster answers (the client reads
            the slot map when it is built).
    """
    retry = Retry(NoBackoff(), retries)
    if cluster:
        return RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, retry=retry
        )
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, retry=retry
    )
