"""Stage `publish`: write the version's lists to Redis, then switch the pointer atomically.

Lists are packed (schemas.redis_layout) and written from the Spark partitions in large
pipelined batches under a new version namespace. Only when every list is written and counted
does the single pointer key move; then versions beyond `keep_versions` are removed from Redis,
and run directories beyond `keep_runs` (not one a kept version reads) from OUT/runs. A failure
before the switch leaves the previous version current and untouched.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import redis
from py4j.protocol import Py4JError
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from redis.exceptions import RedisClusterException

from jobs.context import Context, Stage, StageResult
from jobs.errors import PublishError, QualityGateError
from jobs.quality_gate import gate_check, published_quality
from jobs.run_store import prune_runs, utc_now
from jobs.versions import list_versions
from schemas.redis_layout import Keys, pack_list
from schemas.tables import INTERACTIONS, ITEMS, POPULAR, RECOMMENDATIONS, SIMILAR_ITEMS
from serving.redis_client import RedisClient
from serving.redis_client import connect as connect_url

log = logging.getLogger(__name__)

SCAN_COUNT = 10_000
# How a Redis error raised in a Spark worker reaches the driver: a line of the worker's
# traceback inside Spark's exception text.
WORKER_REDIS_ERROR = re.compile(r"redis\.exceptions\.(\w+): ([^\n]+)")


def connect(url: str, cluster: bool = False) -> RedisClient:
    """Return a client for url (redis:// or rediss://, password in the URL; a Redis Cluster
    node when `cluster`)."""
    return connect_url(url, cluster=cluster, timeout=30, connect_timeout=5)


def choose_version(client: RedisClient, keys: Keys, run_id: str) -> str:
    """Return a version id not used yet: the run id, or run_id.N when re-publishing a run.

    A version with any key left (a write that crashed before the switch) is used too: its
    leftovers may hold lists the new write would not overwrite; garbage collection drops them.
    """
    version, attempt = run_id, 1
    while _used(client, keys, version):
        attempt += 1
        version = f"{run_id}.{attempt}"
    return version


def _used(client: RedisClient, keys: Keys, version: str) -> bool:
    if client.zscore(keys.versions, version) is not None or client.exists(keys.meta(version)):
        return True
    pattern = keys.version_pattern(version)
    return next(iter(client.scan_iter(match=pattern, count=SCAN_COUNT)), None) is not None


def catalogue(items: pd.DataFrame) -> dict[str, list]:
    """Return the version's item table: ids and titles in catalogue (item_id) order."""
    ordered = items.sort_values("item_id", kind="stable")
    return {
        "item_ids": [_plain(v) for v in ordered["item_id"]],
        "titles": ordered["title"].fillna("").tolist(),
    }


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def list_writer(
    url: str,
    key_of: Callable[[object], str],
    item_ids: list,
    id_col: str,
    batch: int,
    cluster: bool = False,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Return a mapInPandas function writing each owner's ranked list as one packed value.

    Rows arrive sorted by (owner, rank) within a partition; an owner may straddle two arrow
    batches, so the last owner of a batch waits for the next one.
    """
    position = pd.Index(item_ids)

    def write(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        client = connect(url, cluster)
        pending = pd.DataFrame()
        written = 0
        for frame in batches:
            frame = pd.concat([pending, frame], ignore_index=True)
            last = frame[id_col].iloc[-1]
            pending, ready = frame[frame[id_col] == last], frame[frame[id_col] != last]
            written += _write_groups(client, ready, id_col, key_of, position, batch)
        written += _write_groups(client, pending, id_col, key_of, position, batch)
        yield pd.DataFrame({"written": [written]})

    return write


def _write_groups(client, frame, id_col, key_of, position, batch) -> int:
    if frame.empty:
        return 0
    owners = frame[id_col].to_numpy()
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    ends = np.r_[starts[1:], len(owners)]
    idx = position.get_indexer(frame["item"].to_numpy())
    scores = frame["score"].to_numpy(dtype=np.float32)
    pipe = client.pipeline(transaction=False)
    for n, (lo, hi) in enumerate(zip(starts, ends, strict=True), start=1):
        pipe.set(key_of(_plain(owners[lo])), pack_list(idx[lo:hi], scores[lo:hi]))
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return len(starts)


def write_lists(
    ctx: Context,
    df: DataFrame,
    id_col: str,
    item_col: str,
    key_of: Callable[[object], str],
    item_ids: list,
    url: str,
) -> int:
    """Write every owner's list of df through the Spark partitions; return lists written."""
    parts = max(1, ctx.spark.sparkContext.defaultParallelism)
    ordered = (
        df.select(F.col(id_col), F.col(item_col).alias("item"), "rank", "score")
        .repartition(parts, id_col)
        .sortWithinPartitions(id_col, "rank")
    )
    config = ctx.config
    writer = list_writer(url, key_of, item_ids, id_col, config.publish_batch, config.redis_cluster)
    try:
        row = ordered.mapInPandas(writer, "written long").agg(F.sum("written")).first()
    except Exception as exc:  # a worker's Redis error arrives wrapped in Spark's exception
        found = WORKER_REDIS_ERROR.search(str(exc))
        if found is None:
            raise
        raise PublishError(
            f"Redis failed while writing lists ({found[1]}: {found[2].strip()[:300]}); the "
            "previously published version stays current"
        ) from None
    return int(row[0] or 0)


def write_empty_lists(
    ctx: Context, client: RedisClient, recs: DataFrame, key_of: Callable[[object], str]
) -> int:
    """Write an empty list for every user of the interactions without recommendations.

    Such a user has seen every item: the API must answer an empty personal list, not the
    popular list (made of items the user has seen). Return the lists written.
    """
    listed = recs.select("user_id").distinct()
    users = ctx.read(INTERACTIONS).select("user_id").distinct()
    empty = pack_list(np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.float32))
    pipe, written = client.pipeline(transaction=False), 0
    for row in users.join(listed, "user_id", "left_anti").toLocalIterator():
        pipe.set(key_of(row.user_id), empty)
        written += 1
        if written % ctx.config.publish_batch == 0:
            pipe.execute()
    pipe.execute()
    return written


def collect_garbage(client: RedisClient, keys: Keys, keep: int) -> int:
    """Drop versions beyond the newest `keep` (never the current, nor one an API worker
    holds because it still answers from it) and unpublished leftovers."""
    current = (client.get(keys.current) or b"").decode()
    published = [v.decode() for v in client.zrevrange(keys.versions, 0, -1)]
    now = time.time()
    client.zremrangebyscore(keys.serving, "-inf", now)  # holds of workers gone or switched
    held = {v.decode() for v in client.zrangebyscore(keys.serving, now, "+inf")}
    kept = set(published[:keep]) | {current} | held
    stale = [v for v in published if v not in kept]
    if stale:
        client.zrem(keys.versions, *stale)
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=keys.version_pattern(), count=SCAN_COUNT):
        if keys.version_of(key.decode(errors="replace")) not in kept:
            batch.append(key)
        if len(batch) >= SCAN_COUNT:
            removed += client.unlink(*batch)
            batch = []
    if batch:
        removed += client.unlink(*batch)
    return removed


def run(ctx: Context) -> StageResult:
    """Write the version, check it is complete, switch the pointer, collect garbage."""
    if not ctx.redis_url:
        raise PublishError("no Redis URL to publish to")
    keys = Keys(ctx.config.redis_prefix)
    try:
        client = connect(ctx.redis_url, ctx.config.redis_cluster)
        client.ping()
        check_gate(ctx, client, keys)
        version = choose_version(client, keys, ctx.run.run_id)
        lists = _write_version(ctx, client, keys, version)
        switch(client, keys, version)
        removed = collect_garbage(client, keys, ctx.config.keep_versions)
        in_use = {info.meta.get("run_id") for info in list_versions(client, keys)}
    except (redis.RedisError, RedisClusterException) as exc:
        raise PublishError(
            f"Redis failed while publishing ({type(exc).__name__}: {exc}); the previously "
            "published version stays current"
        ) from None
    ctx.manifest.version = version
    ctx.manifest.counts.update(redis_user_lists=lists["users"], redis_item_lists=lists["items"])
    pruned = retain_runs(ctx, {str(run_id) for run_id in in_use if run_id})
    return StageResult(
        lists["users"],
        f"version {version}: {lists['users']} user lists, "
        f"{lists['items']} similar lists, {removed} old keys removed, {pruned} old runs deleted",
    )


def retain_runs(ctx: Context, in_use: set[str]) -> int:
    """Delete run directories beyond `keep_runs`, never one a published version reads. The
    version is already switched: a failure here is a warning, not a failed run."""
    try:
        removed = prune_runs(ctx.run, ctx.config.keep_runs, in_use)
    except (OSError, Py4JError) as exc:
        log.warning("could not delete old run directories (%s); they stay until the next run", exc)
        return 0
    if removed:
        log.info("deleted old runs beyond keep_runs=%d: %s", ctx.config.keep_runs, removed)
    return len(removed)


def switch(client: RedisClient, keys: Keys, version: str) -> None:
    """Add the version to the published ones and point readers at it, in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.zadd(keys.versions, {version: time.time()})
    pipe.set(keys.current, version)
    pipe.execute()


def check_gate(ctx: Context, client: RedisClient, keys: Keys) -> None:
    """Record the quality gate's verdict; raise QualityGateError when it refuses the run."""
    previous, old = published_quality(client, keys)
    verdict = gate_check(ctx.manifest.quality, old, previous, ctx.config.gate_max_drop)
    verdict["forced"] = bool(ctx.config.force_publish and not verdict["passed"])
    if ctx.manifest.quality:
        ctx.manifest.quality["gate"] = verdict
    if not verdict["passed"] and not ctx.config.force_publish:
        raise QualityGateError(verdict["reason"])


def _write_version(ctx: Context, client: RedisClient, keys: Keys, version: str) -> dict:
    items = catalogue(ctx.collect(ITEMS, "item_id", "title"))
    ids = items["item_ids"]
    popular = ctx.collect(POPULAR, order_by="rank")
    position = pd.Index(ids)
    client.set(keys.items(version), json.dumps(items, ensure_ascii=False))
    client.set(
        keys.popular(version),
        pack_list(position.get_indexer(popular["item_id"]), popular["score"].to_numpy()),
    )
    recs = ctx.read(RECOMMENDATIONS)
    users = write_lists(
        ctx, recs, "user_id", "item_id", lambda u: keys.user(version, u), ids, ctx.redis_url
    )
    expected = ctx.manifest.counts.get("users") or recs.select("user_id").distinct().count()
    if users < expected:  # users who have seen every item: min(N, unseen) = 0 items
        empty = write_empty_lists(ctx, client, recs, lambda u: keys.user(version, u))
        ctx.manifest.counts["empty_user_lists"] = empty
        users += empty
    similar = write_lists(
        ctx,
        ctx.read(SIMILAR_ITEMS),
        "item_id",
        "similar_item_id",
        lambda i: keys.similar(version, i),
        ids,
        ctx.redis_url,
    )
    if users != expected:
        raise PublishError(f"wrote {users} user lists, expected {expected}; version not switched")
    meta = {
        "version": version,
        "run_id": ctx.run.run_id,
        "generated_at": utc_now(),
        "users": users,
        "items": len(ids),
        "top_n": ctx.config.top_n,
        "index_dir": ctx.run.path("index"),
        "encoder": ctx.config.encoder,
        "id_types": ctx.id_types,
        "quality": ctx.manifest.quality,
    }
    client.set(keys.meta(version), json.dumps(meta))
    return {"users": users, "items": similar}


STAGE = Stage("publish", (INTERACTIONS, ITEMS, POPULAR, RECOMMENDATIONS, SIMILAR_ITEMS), (), run)
