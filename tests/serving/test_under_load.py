"""Faults and load against a real `nightrec serve` (gunicorn, 2 workers x 4 threads, the API
benchmark's layout) on loopback, loaded by `benchmarks.loadgen` from separate processes.

One server for the module, over a copy of the session's published run and a redis-server of
the module's own (copied from the session's), so the tests can stop Redis and publish:

- Redis restarted under load: only 200 and 503 answers, 503 only while Redis is down (plus
  a short grace), 200 again after, the same gunicorn workers throughout;
- a version flip under load: every answer names one version and carries exactly that
  version's list (the new version's lists are the old ones reversed, so a mix shows);
- a new version whose index file is corrupt, then one whose index file is missing (two
  publishes in a row with the default keep_versions): the old version keeps answering with
  its own lists, /readyz and /metrics say so, no 5xx; `rollback` to it recovers;
- two soaks: closed loop as the benchmark loads, then open loop at half the throughput the
  first measured; each bounded in time and count, reporting served requests, errors and
  p99 (printed and written to JSON under the test's tmp dir).

Times are `time.monotonic()`, which the load processes share with the test (Linux).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from benchmarks.loadgen import Answer, Load, Result, Running, Scenario, start_scenario
from jobs.pipeline import run_job
from jobs.versions import rollback
from schemas.redis_layout import Keys
from tests.serving.conftest import TOP_N, RedisProcess, copy_keys, job_config
from tests.serving.server import (
    START_SECONDS,
    Server,
    fetch,
    fetch_json,
    metric_lines,
    nightrec_serve,
    poll,
    workers,
)

pytestmark = pytest.mark.slow

WORKERS, THREADS = 2, 4  # benchmarks/api.py's layout
FAULT_RATE = 200.0  # requests/s while a fault happens (well under capacity: faults, not load)
FAULT_SECONDS = 90.0  # upper bound of one fault test's load; each stops it once done
GRACE = 1.0  # seconds after Redis answers again in which a 503 may still be in flight
# The fixed-rate soak's rate: SOAK_SHARE of the throughput the closed-loop soak measured on
# this machine, at most SOAK_RATE. The same 2-core machines have run the API benchmark's
# reference anywhere from 1,400 to 3,900 req/s, so no fixed rate suits them all; an open
# loop near capacity only grows queues. NIGHTREC_SOAK_RPS and NIGHTREC_SOAK_SECONDS change
# the rate and the length.
SOAK_RATE = 1000.0
SOAK_SHARE = 0.5
SOAK_CONNECTIONS = 32
SOAK_CAP = 1_000_000  # requests: a bound the closed-loop soak cannot reach in its time
# Generous: the benchmark's p99 at capacity is 31 ms, but tests share the 2 cores with other
# work (163 ms measured at 1000 req/s with the load average at 6 to 11).
SOAK_P99_MS = 500.0
ROUTE = "/v1/users/<user_id>/recommendations"
# A version that failed to load is not retried within a test (default: after 10 s), so that
# counting load attempts tells when every worker has tried the newest one.
SERVER_ENV = {"NIGHTREC_VERSION_RETRY_SECONDS": "600"}


@dataclass
class Stand:
    """The module's server and what the tests know about it."""

    server: Server
    redis: RedisProcess
    out: Path
    data: Path
    lists: dict[str, dict[str, list]]  # version -> user id (as in the URL) -> item ids
    pids: set[str]  # the gunicorn workers that started: the same ones must answer to the end
    figures: dict[str, dict]

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def paths(self) -> tuple[str, ...]:
        return tuple(f"/v1/users/{u}/recommendations?n={TOP_N}" for u in self.lists["v1"])


def read_lists(spark, run_dir: Path) -> dict[str, list]:
    """Return each user's list (item ids by rank) from a run's recommendations table."""
    rows = spark.read.parquet(str(run_dir / "recommendations")).orderBy("user_id", "rank")
    lists: dict[str, list] = {}
    for row in rows.collect():
        lists.setdefault(str(row["user_id"]), []).append(row["item_id"])
    return lists


@pytest.fixture(scope="module")
def stand(spark, published, tmp_path_factory) -> Iterator[Stand]:
    """`nightrec serve` over a copy of the published run v1, in a Redis of its own."""
    root = tmp_path_factory.mktemp("under-load")
    (root / "redis").mkdir()
    server_redis = RedisProcess(root / "redis").start()
    try:
        assert copy_keys(published.redis_url, server_redis.url) > 0
        out = root / "out"
        shutil.copytree(published.out / "runs" / "v1", out / "runs" / "v1")
        lists = {"v1": read_lists(spark, out / "runs" / "v1")}
        own = replace(published, out=out, redis_url=server_redis.url)
        with nightrec_serve(own, root / "serve.log", WORKERS, THREADS, SERVER_ENV) as server:
            poll("every worker up", lambda: len(workers(server.base)) == WORKERS, START_SECONDS)
            pids = set(workers(server.base))
            stand = Stand(server, server_redis, out, published.data, lists, pids, {})
            yield stand
        print(f"under-load figures: {json.dumps(stand.figures, sort_keys=True)}")
        (root / "figures.json").write_text(json.dumps(stand.figures, indent=2, sort_keys=True))
        output = server.output()
        assert server.returncode == 0, output[-3000:]
        assert "unexpected error while answering" not in output  # no 500 behind any answer
    finally:
        server_redis.stop()


def publish_copy(stand: Stand, spark, name: str, damage: Callable[[Path], None] | None = None):
    """Publish run v1 again as version `name` with every list reversed (the real publish
    stage over a copy of the run), after `damage` has done its work on the copy's index."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    source, target = stand.out / "runs" / "v1", stand.out / "runs" / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("recommendations"))
    recs = spark.read.parquet(str(source / "recommendations"))
    length = F.count("*").over(Window.partitionBy("user_id"))
    rank = (length - F.col("rank") + 1).cast(recs.schema["rank"].dataType)
    recs.withColumn("rank", rank).select(*recs.columns).write.parquet(
        str(target / "recommendations")
    )
    if damage is not None:
        damage(target / "index")
    config = job_config(stand.data, stand.out, stand.redis.url, name, stages="publish")
    run_job(config, spark=spark)
    stand.lists[name] = {user: items[::-1] for user, items in stand.lists["v1"].items()}


def answered(base: str, status: str = "200") -> float:
    """Return how many recommendation requests every worker together answered with status."""
    samples = metric_lines(base, "nightrec_http_requests_total")
    return sum(v for labels, v in samples if (labels["route"], labels["status"]) == (ROUTE, status))


def more_answers(stand: Stand, count: int, status: str = "200") -> float:
    """Wait until the server has answered `count` more recommendation requests with status."""
    start = answered(stand.base, status)
    return poll(
        f"{count} more {status} answers", lambda: answered(stand.base, status) >= start + count
    )


def fault_load(stand: Stand) -> Running:
    """Start the fault tests' load: every user's list at FAULT_RATE, answers kept."""
    scenario = Scenario("faults", stand.port, stand.paths(), 8, FAULT_RATE, keep_answers=True)
    return start_scenario(scenario, Load(0.0, FAULT_SECONDS, int(FAULT_RATE * FAULT_SECONDS), 2))


def finish(running: Running) -> Result:
    running.stop()
    return running.result()


def mismatches(stand: Stand, answers: tuple[Answer, ...]) -> list[str]:
    """Return the 200 answers that are not their version's personal list for the user."""
    wrong = []
    for answer in answers:
        if answer.status != 200:
            continue
        body = json.loads(answer.body)
        expected = stand.lists.get(body["version"], {}).get(str(body["user_id"]))
        items = [item["item_id"] for item in body["items"]]
        if body["source"] != "personal" or expected is None or items != expected[:TOP_N]:
            wrong.append(f"{body['version']} user {body['user_id']}")
    return wrong


def versions_of(answers: tuple[Answer, ...]) -> list[str]:
    return [json.loads(a.body)["version"] for a in answers if a.status == 200]


def test_redis_restarted_under_load_gives_503s_only_while_down(stand):
    running = fault_load(stand)
    try:
        more_answers(stand, 200)
        down_at = time.monotonic()
        stand.redis.stop()
        more_answers(stand, 100, status="503")  # the load has met the outage
        stand.redis.start()
        up_at = time.monotonic()
        more_answers(stand, 400)
    finally:
        if stand.redis.proc is None:  # failed while Redis was down: the next tests need it
            stand.redis.start()
        result = finish(running)

    answers = result.answers
    statuses = result.statuses
    assert set(statuses) <= {200, 503}, statuses
    late = [a for a in answers if a.status == 503 and not down_at <= a.received <= up_at + GRACE]
    assert late == [], (
        f"{len(late)} 503s outside the outage, first sent {late[0].sent - up_at:+.2f} s after it"
    )
    codes = {json.loads(a.body)["error"]["code"] for a in answers if a.status == 503}
    after = [a for a in answers if a.sent > up_at + GRACE]
    assert statuses.get(503, 0) > 0 and codes == {"unavailable"}
    assert len(after) >= 100 and {a.status for a in after} == {200}
    assert mismatches(stand, answers) == [] and set(versions_of(answers)) == {"v1"}
    assert stand.server.proc.poll() is None and set(workers(stand.base)) == stand.pids
    stand.figures["redis_restart"] = {
        "requests": len(answers),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "down_seconds": round(up_at - down_at, 3),
        "last_503_after_up_ms": round(
            max((a.received - up_at) * 1000 for a in answers if a.status == 503), 1
        ),
        "p99_ms": round(result.percentile(99), 1),
    }


def test_a_version_flip_under_load_never_mixes_versions(stand, spark):
    old = stand.lists["v1"]
    running = fault_load(stand)
    try:
        more_answers(stand, 200)
        publish_at = time.monotonic()
        publish_copy(stand, spark, "v2")
        switched_at = poll(
            "every worker serving v2", lambda: set(workers(stand.base).values()) == {"v2"}
        )
        more_answers(stand, 400)
    finally:
        result = finish(running)

    assert all(len(items) < 2 or stand.lists["v2"][u] != items for u, items in old.items())
    answers = result.answers
    assert result.statuses == {200: len(answers)}, result.statuses
    assert mismatches(stand, answers) == []
    named = versions_of(answers)
    assert set(named) == {"v1", "v2"}
    assert all(v == "v2" for a, v in zip(answers, named, strict=True) if a.sent > switched_at)
    assert all(v == "v1" for a, v in zip(answers, named, strict=True) if a.received < publish_at)
    assert stand.server.proc.poll() is None and set(workers(stand.base)) == stand.pids
    stand.figures["version_flip"] = {
        "requests": len(answers),
        "v1_answers": named.count("v1"),
        "v2_answers": named.count("v2"),
        "mixed": len(mismatches(stand, answers)),
        "errors": result.errors,
        "publish_to_all_workers_s": round(switched_at - publish_at, 2),
        "p99_ms": round(result.percentile(99), 1),
    }


def corrupt(index: Path) -> None:
    """Overwrite the largest file of the index with garbage of the same size."""
    victim = max((p for p in index.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(b"\xde\xad" * (victim.stat().st_size // 2 + 1))


def remove(index: Path) -> None:
    """Delete the largest file of the index."""
    max((p for p in index.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size).unlink()


def test_a_new_version_with_a_broken_index_leaves_the_old_one_served(stand, spark):
    served = fetch_json(f"{stand.base}/readyz")["serving_version"]
    keys, store = Keys(), redis.Redis.from_url(stand.redis.url)
    reports = {}
    running = fault_load(stand)
    try:
        more_answers(stand, 200)
        # two broken runs in a row, with the default keep_versions (2): the second publish's
        # garbage collection must spare the version the workers still answer from
        for name, damage in (("v3", corrupt), ("v4", remove)):
            reports[name] = publish_broken(stand, spark, name, damage, served)
        assert rollback(store, keys, served) == "v4"  # `nightrec rollback`: the way back
        poll("recovery", lambda: fetch_json(f"{stand.base}/readyz")["stale"] is False)
        more_answers(stand, 200)
    finally:
        result = finish(running)

    answers = result.answers
    assert result.statuses == {200: len(answers)}, result.statuses
    assert set(versions_of(answers)) == {served} and mismatches(stand, answers) == []
    assert metric_value(stand.base, "nightrec_version_stale") == 0.0
    assert stand.server.proc.poll() is None and set(workers(stand.base)) == stand.pids
    stand.figures["broken_index"] = {
        "requests": len(answers),
        "errors": result.errors,
        "served": served,
        "reasons": reports,
        "p99_ms": round(result.percentile(99), 1),
    }


def loads(base: str) -> float:
    """Return the version load attempts of every worker together, whatever their outcome."""
    return sum(v for _, v in metric_lines(base, "nightrec_version_loads_total"))


def publish_broken(stand: Stand, spark, name: str, damage, served: str) -> str:
    """Publish `name` with a damaged index; wait until every worker tried it; check that
    `served` still answers and that /readyz and /metrics say why. Return /readyz's reason."""
    before = loads(stand.base)
    publish_copy(stand, spark, name, damage)
    poll(
        f"{name} tried by every worker",
        lambda: (
            set(workers(stand.base, "published").values()) == {name}
            and loads(stand.base) >= before + WORKERS
        ),
    )
    return ready_and_stale(stand, served, name)


def metric_value(base: str, name: str) -> float:
    (sample,) = metric_lines(base, name)
    return sample[1]


def ready_and_stale(stand: Stand, served: str, broken: str) -> str:
    """Check /readyz and /metrics while `broken` is published and `served` answers."""
    for _ in range(WORKERS * 2):  # the workers take turns on the connections
        status, text = fetch(f"{stand.base}/readyz")
        body = json.loads(text)
        assert status == 200 and body["ready"] is True, body
        assert (body["serving_version"], body["published_version"]) == (served, broken)
        assert body["stale"] is True and f"version {broken} could not be loaded" in body["reason"]
    assert metric_value(stand.base, "nightrec_version_stale") == 1.0
    assert set(workers(stand.base).values()) == {served}
    loads = {
        labels["outcome"]: v
        for labels, v in metric_lines(stand.base, "nightrec_version_loads_total")
    }
    assert loads.get("partial", 0) >= WORKERS
    return str(body["reason"])


def positive_setting(variable: str, default: float) -> float:
    """Return a positive number from the environment (default when unset), or fail saying so."""
    text = os.environ.get(variable, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        pytest.fail(f"{variable} must be a positive number, got {text!r}", pytrace=False)
    return value


def soak(stand: Stand, tmp_path: Path, name: str, rate: float, cap: int) -> Result:
    """Load the server for NIGHTREC_SOAK_SECONDS (default 60) at `rate` (0: as fast as
    SOAK_CONNECTIONS closed-loop connections go, as the API benchmark does); record and print
    the figures, and check the run ended by its time, with no error and no worker restarted."""
    seconds = positive_setting("NIGHTREC_SOAK_SECONDS", 60.0)
    scenario = Scenario(name, stand.port, stand.paths(), SOAK_CONNECTIONS, rate)
    result = start_scenario(scenario, Load(2.0, seconds, cap, 2)).result()

    figures = {
        "target_rps": rate or "closed loop",
        "connections": SOAK_CONNECTIONS,
        "seconds": round(result.seconds, 2),
        "served": result.requests,
        "errors": result.errors,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "achieved_rps": round(result.rps, 1),
        "p50_ms": round(result.percentile(50), 2),
        "p99_ms": round(result.percentile(99), 2),
        "max_ms": round(float(result.latencies_ms.max()), 2) if result.requests else None,
    }
    stand.figures[name] = figures
    (tmp_path / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(f"{name}: {json.dumps(figures)} ({tmp_path / f'{name}.json'})")
    assert result.errors == 0, figures
    assert result.requests < cap and result.seconds <= seconds + 1, figures  # ended by time
    assert result.percentile(99) < SOAK_P99_MS, figures
    assert stand.server.proc.poll() is None and set(workers(stand.base)) == stand.pids
    return result


def test_soak_at_the_benchmarks_throughput(stand, tmp_path):
    """Closed loop with the benchmark's layout (2 x 4 threads, 32 connections, two load
    processes): the throughput `python -m benchmarks.api` reports, held for the whole run."""
    result = soak(stand, tmp_path, "capacity", 0.0, SOAK_CAP)
    # the fault tests' load must be well under what the server holds
    assert result.rps >= 2 * FAULT_RATE, stand.figures["capacity"]


def test_soak_at_a_fixed_rate(stand, tmp_path):
    """Open loop: latency counts from each request's scheduled time, so a stall shows."""
    rate = positive_setting("NIGHTREC_SOAK_RPS", soak_rate(stand))
    seconds = positive_setting("NIGHTREC_SOAK_SECONDS", 60.0)
    result = soak(stand, tmp_path, "soak", rate, int(rate * seconds * 1.05) + 100)
    assert result.rps >= 0.95 * rate, stand.figures["soak"]


def soak_rate(stand: Stand) -> float:
    """Return the fixed-rate soak's default rate: SOAK_SHARE of what this server holds in a
    closed loop here (the capacity soak's throughput, or a short probe's when that did not
    run), at most SOAK_RATE."""
    capacity = stand.figures.get("capacity", {}).get("achieved_rps")
    if capacity is None:
        scenario = Scenario("probe", stand.port, stand.paths(), SOAK_CONNECTIONS)
        capacity = start_scenario(scenario, Load(2.0, 10.0, SOAK_CAP, 2)).result().rps
    return round(min(SOAK_RATE, SOAK_SHARE * capacity), 1)
