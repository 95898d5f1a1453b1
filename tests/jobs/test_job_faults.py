"""Faults in the job (issue 7): Redis killed mid-publish, the job process killed mid-stage, the
artefact disk full or read-only, a corrupt previous run.

After each fault readers still get the complete old version (byte for byte), the next run
succeeds, and garbage collection leaves exactly the keys of the layout of the kept versions.
Every fault is real: a redis-server killed with SIGKILL and restarted on its AOF, a job process
group killed with SIGKILL, a tmpfs filled up or mounted read-only, truncated or garbled files.

Version v1 is published once per module; each test restores it into a Redis and an OUT of its
own (DUMP/RESTORE, copied run directory) instead of running the job again.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from jobs.pipeline import STAGES, RunFailed, run_job
from jobs.publish import choose_version
from jobs.versions import check_complete
from schemas.manifest import RUN_MANIFEST, RunManifest
from schemas.redis_layout import Keys, unpack_list
from serving.store import ListStore
from tests.conftest import REPO
from tests.movielens import checkerboard, job_config, write_movielens
from tests.serving.conftest import RedisProcess, dump_keys, restore_keys

pytestmark = pytest.mark.slow
SIZE = 12
# Quality and the ONNX export play no part in the faults; a few epochs suffice for 12 users.
FAST = {
    "top_n": 3,
    "similar_n": 4,
    "cf_dim": 4,
    "cf_epochs": 5,
    "eval_holdout": 0,
    "export_query_encoder": False,
}
KEYS = Keys()
WAIT_S = 240  # upper bound of any wait on the job; each returns as soon as its event happens


def config(data: Path, out: Path, redis_url: str, run_id: str, **extra: object):
    return job_config(data, out, redis_url, run_id, **{**FAST, **extra})


@dataclass(frozen=True)
class Baseline:
    """v1 as the job published it: its data, its OUT, and every Redis key DUMPed."""

    data: Path
    out: Path
    dump: dict[bytes, bytes]


@pytest.fixture(scope="module")
def baseline(spark, tmp_path_factory) -> Baseline:
    data = write_movielens(tmp_path_factory.mktemp("board"), *checkerboard(SIZE))
    out = tmp_path_factory.mktemp("v1-out")
    server = RedisProcess(tmp_path_factory.mktemp("v1-redis")).start()
    try:
        run_job(config(data, out, server.url, "v1"), spark=spark, progress=io.StringIO())
        dump = dump_keys(redis.Redis.from_url(server.url))
    finally:
        server.stop()
    return Baseline(data, out, dump)


@pytest.fixture
def world(baseline, tmp_path) -> Iterator[tuple[RedisProcess, Path]]:
    """A redis-server of the test's own holding v1, and an OUT holding v1's run directory."""
    server = RedisProcess(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    restore_keys(redis.Redis.from_url(server.url), baseline.dump)
    out = tmp_path / "out"
    shutil.copytree(baseline.out / "runs" / "v1", out / "runs" / "v1")
    try:
        yield server, out
    finally:
        server.stop()


def assert_v1_served(client: redis.Redis, baseline: Baseline) -> None:
    """The pointer names v1, v1 is complete, and every key of v1 is as published."""
    assert client.get(KEYS.current) == b"v1"
    check_complete(client, KEYS, "v1")
    assert {key: client.dump(key) for key in baseline.dump} == baseline.dump


def layout(spark, out: Path, run_id: str, version: str) -> set[str]:
    """The keys schemas/redis_layout.py gives a version published from the run's tables."""
    run = out / "runs" / run_id
    users = spark.read.parquet(str(run / "recommendations")).select("user_id").distinct()
    items = spark.read.parquet(str(run / "similar_items")).select("item_id").distinct()
    return (
        {KEYS.meta(version), KEYS.items(version), KEYS.popular(version)}
        | {KEYS.user(version, row.user_id) for row in users.collect()}
        | {KEYS.similar(version, row.item_id) for row in items.collect()}
    )


def all_keys(client: redis.Redis) -> set[str]:
    return {key.decode() for key in client.scan_iter("*", count=10_000)}


def version_keys(client: redis.Redis, version: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(KEYS.version_pattern(version), count=10_000)}


def one_line(reason: str) -> None:
    assert reason and "\n" not in reason and "Traceback" not in reason, reason


class StallingProxy:
    """A TCP proxy in front of Redis that stalls every connection once a client sends bytes
    matching `trigger` (the first write of the new version's user lists): the test learns
    the publish stage is writing lists (`tripped`) while that write is still in flight.
    After `release()` every connection is closed and new ones are refused."""

    def __init__(self, upstream_port: int, trigger: bytes) -> None:
        self.upstream_port, self.trigger = upstream_port, trigger
        self.tripped, self.released = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.released.set()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
            except OSError:
                conn.close()
                continue
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if self.tripped.is_set() or self.trigger in tail + data:
                    self.tripped.set()
                    self.released.wait()
                    break
                dst.sendall(data)
                tail = data[-len(self.trigger) :]
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def test_redis_killed_mid_publish_keeps_v1_and_the_next_run_leaves_no_orphans(
    spark, baseline, world
):
    server, out = world
    proxy = StallingProxy(server.port, f"{KEYS.version_root('v1.2')}:u:".encode())
    failure: list[BaseException] = []

    def republish() -> None:  # the job again over v1's tables: version v1.2
        try:
            run_job(
                config(baseline.data, out, proxy.url, "v1", stages="publish"),
                spark=spark,
                progress=io.StringIO(),
            )
        except BaseException as exc:
            failure.append(exc)

    job = threading.Thread(target=republish)
    job.start()
    try:
        assert proxy.tripped.wait(WAIT_S), "the publish stage never wrote a user list"
        assert server.proc is not None
        server.proc.kill()  # SIGKILL while the lists are being written
        server.proc.wait(timeout=10)
        server.proc = None
    finally:
        proxy.release()
        job.join(WAIT_S)
    assert not job.is_alive()

    assert len(failure) == 1 and isinstance(failure[0], RunFailed), failure
    reason = str(failure[0])
    one_line(reason)
    assert reason.startswith("publish: ") and "Redis" in reason, reason
    manifest = RunManifest.from_json((out / "runs" / "v1" / RUN_MANIFEST).read_text())
    assert (manifest.status, manifest.reason) == ("failed", reason)

    server.start()  # same port, same directory: the AOF brings the data back
    client = redis.Redis.from_url(server.url)
    assert_v1_served(client, baseline)
    half = version_keys(client, "v1.2")
    assert half and KEYS.meta("v1.2") not in half  # written in part, never switched to
    assert half < layout(spark, out, "v1", "v1.2")

    again = run_job(config(baseline.data, out, server.url, "v1", stages="publish"), spark=spark)

    assert again.status == "published" and again.version not in (None, "v1", "v1.2")
    assert client.get(KEYS.current) == again.version.encode()
    check_complete(client, KEYS, again.version)
    expected = {KEYS.current, KEYS.versions} | layout(spark, out, "v1", "v1")
    expected |= layout(spark, out, "v1", again.version)
    assert all_keys(client) == expected  # v1.2's leftovers collected, nothing else orphaned


def test_publish_never_writes_into_a_crashed_versions_leftovers(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set(KEYS.user("r7", 999), b"a list of a user the rerun may not have")

    assert choose_version(client, KEYS, "r7") == "r7.2"
    assert choose_version(client, KEYS, "r8") == "r8"


def _job_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    settings = {**FAST, "spark_partitions": 4, "spark_class_cache": ""}
    env.update({f"NIGHTREC_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def test_job_killed_mid_stage_then_the_same_run_id_succeeds(spark, baseline, world):
    server, out = world
    client = redis.Redis.from_url(server.url)
    store = ListStore(client)
    v1_lists = {u: store.user_list("v1", u) for u in range(1, SIZE + 1)}
    seen: list[tuple[str | None, bool]] = []
    stop = threading.Event()

    def reader() -> None:  # an API's reads while the job runs and dies
        while not stop.is_set():
            version = store.current_version()
            seen.append((version, all(store.user_list(version, u) == v1_lists[u] for u in (1, 2))))
            stop.wait(0.05)

    command = [sys.executable, "-m", "jobs.cli", "run", "--data", str(baseline.data)]
    command += ["--out", str(out), "--redis-url", server.url, "--run-id", "r2"]
    command += ["--spark-master", "local[2]"]
    watcher = threading.Thread(target=reader)
    watcher.start()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=_job_env(server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the Spark JVM dies with it
    )
    killed_after = None
    watchdog = threading.Timer(WAIT_S, os.killpg, (proc.pid, signal.SIGKILL))  # never hang
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # one line per finished stage
            if line.startswith(f"[1/{len(STAGES)}] ingest"):
                killed_after = line
                os.killpg(proc.pid, signal.SIGKILL)  # now inside embed_items
                break
    finally:
        if proc.poll() is None and killed_after is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        watchdog.cancel()
        stop.set()
        watcher.join()
    assert killed_after, "the job never finished its first stage"
    assert proc.returncode == -signal.SIGKILL

    record = RunManifest.from_json((out / "runs" / "r2" / RUN_MANIFEST).read_text())
    assert record.status == "running" and [s["stage"] for s in record.stages] == ["ingest"]
    assert seen and set(seen) == {("v1", True)}
    assert_v1_served(client, baseline)

    again = run_job(config(baseline.data, out, server.url, "r2"), spark=spark)

    assert (again.status, again.version) == ("published", "r2")
    assert [s["stage"] for s in again.stages] == [s.name for s in STAGES]  # each once
    assert not list((out / "runs" / "r2").glob(".*tmp*"))  # no half-written directory left
    check_complete(client, KEYS, "r2")
    expected = {KEYS.current, KEYS.versions} | layout(spark, out, "v1", "v1")
    assert all_keys(client) == expected | layout(spark, out, "r2", "r2")


@dataclass
class Mounts:
    """Mounts a test made, unmounted in reverse order at its end."""

    made: list[Path]

    def mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)
        if Path(args[-1]) not in self.made:  # a remount adds no mount
            self.made.append(Path(args[-1]))


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = Mounts([])
    try:
        yield made
    finally:
        for target in reversed(made.made):  # lazily where a dead Spark task keeps a file open
            if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(target)], check=True)


@pytest.fixture
def tiny_disk(mounts, tmp_path) -> Path:
    """A 16 MiB tmpfs (skipped where mounting is not allowed)."""
    target = tmp_path / "disk"
    target.mkdir()
    try:
        mounts.mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(target))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc.stderr.decode().strip()}")
    return target


def fill(path: Path, free: int) -> Path:
    """Fill the filesystem of path up, then give `free` bytes back; return the filler file."""
    filler = path / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * 65536):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        handle.truncate(max(0, handle.tell() - free))
    stats = os.statvfs(path)
    assert stats.f_bavail * stats.f_frsize <= free
    return filler


def checksums(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_full_or_read_only_disk_fails_in_one_line_and_keeps_v1(
    spark, baseline, world, mounts, tiny_disk
):
    server, _ = world
    client = redis.Redis.from_url(server.url)
    out = tiny_disk / "out"
    shutil.copytree(baseline.out / "runs" / "v1", out / "runs" / "v1")
    v1_files = checksums(out / "runs" / "v1")
    filler = fill(tiny_disk, 64 * 1024)  # room for a manifest, not for a stage's tables

    with pytest.raises(RunFailed) as full:
        run_job(config(baseline.data, out, server.url, "r2"), spark=spark, progress=io.StringIO())

    one_line(str(full.value))
    assert "No space left on device" in str(full.value), full.value
    assert f"{out}/runs/r2/" in str(full.value), full.value
    filler.unlink()
    filler = fill(tiny_disk, 0)  # not even a manifest fits

    with pytest.raises(RunFailed) as fuller:
        run_job(config(baseline.data, out, server.url, "r3"), spark=spark, progress=io.StringIO())

    one_line(str(fuller.value))
    assert "No space left on device" in str(fuller.value) and "r3" in str(fuller.value)
    filler.unlink()
    frozen = tiny_disk.parent / "read-only"  # the same files, mounted read-only
    frozen.mkdir()
    mounts.mount("--bind", str(tiny_disk), str(frozen))
    mounts.mount("-o", "remount,bind,ro", str(frozen))
    frozen_out = frozen / "out"

    with pytest.raises(RunFailed) as read_only:
        run_job(
            config(baseline.data, frozen_out, server.url, "r4"),
            spark=spark,
            progress=io.StringIO(),
        )

    one_line(str(read_only.value))
    assert "Read-only file system (EROFS)" in str(read_only.value)
    assert f"{frozen_out}/runs/r4" in str(read_only.value)
    command = [sys.executable, "-m", "jobs.cli", "run", "--data", str(baseline.data)]
    command += ["--out", str(frozen_out), "--redis-url", server.url, "--run-id", "r5"]
    cli = subprocess.run(
        [*command, "--spark-master", "local[1]"],
        cwd=REPO,
        env=_job_env(server.url),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    said = [line for line in cli.stderr.splitlines() if line.startswith("nightrec:")]
    assert said == [
        f"nightrec: run r5 failed: setup: Read-only file system (EROFS): {frozen_out}/runs/r5"
    ]
    assert checksums(out / "runs" / "v1") == v1_files
    assert_v1_served(client, baseline)

    again = run_job(config(baseline.data, out, server.url, "v1", stages="publish"), spark=spark)

    assert again.status == "published" and client.get(KEYS.current) == again.version.encode()
    check_complete(client, KEYS, again.version)
    assert {KEYS.version_of(k) for k in all_keys(client)} == {None, "v1", again.version}


def test_corrupt_previous_run_is_rebuilt_not_reused(spark, baseline, world):
    server, out = world
    client = redis.Redis.from_url(server.url)
    v1 = out / "runs" / "v1"
    shutil.copytree(v1, out / "runs" / "v0")  # an older run whose manifest is garbled
    older = json.loads((v1 / RUN_MANIFEST).read_text())
    older["finished_at"] = "2000-01-01T00:00:00+00:00"
    (out / "runs" / "v0" / RUN_MANIFEST).write_text(json.dumps(older)[:40] + "\x00garbage")
    parts = sorted((v1 / "item_embeddings").glob("part-*.parquet"))
    assert parts
    for part in parts:  # truncated in the middle: no footer
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    for index_file in (p for p in (v1 / "index").rglob("*") if p.is_file()):
        index_file.write_bytes(b"garbage" * 3)

    after = run_job(config(baseline.data, out, server.url, "r2"), spark=spark)

    assert (after.status, after.version) == ("published", "r2")
    assert (after.counts["items_encoded"], after.counts["items_reused"]) == (SIZE, 0)
    said = after.params["embeddings_not_reused"]
    assert f"{v1}/item_embeddings unreadable" in said and "footer" in said, said
    fresh = _embeddings(spark, out / "runs" / "r2")
    clean = _embeddings(spark, baseline.out / "runs" / "v1")
    assert fresh.keys() == clean.keys()
    for item, vector in fresh.items():
        np.testing.assert_allclose(vector, clean[item], atol=1e-5)
    check_complete(client, KEYS, "r2")
    store = ListStore(client)
    catalogue = store.catalogue("r2")
    for item in catalogue.item_ids:
        indices, scores = unpack_list(client.get(KEYS.similar("r2", item)))
        assert len(indices) == FAST["similar_n"] and np.isfinite(scores).all()
        assert (indices < len(catalogue.item_ids)).all()


def test_reuse_drops_previous_embeddings_that_are_not_unit_vectors(spark, baseline, tmp_path):
    from pyspark.sql import functions as F

    from jobs.context import Context
    from jobs.embed_items import previous_embeddings
    from jobs.run_store import RunDir

    out = tmp_path / "out"
    shutil.copytree(baseline.out / "runs" / "v1", out / "runs" / "v1")
    table = str(out / "runs" / "v1" / "item_embeddings")
    good = spark.read.parquet(str(baseline.out / "runs" / "v1" / "item_embeddings"))
    scaled = F.transform("embedding", lambda x: x * 3).cast("array<float>")  # readable garbage
    garbled = good.withColumn(
        "embedding", F.when(F.col("item_id") % 2 == 0, scaled).otherwise(F.col("embedding"))
    )
    garbled.write.mode("overwrite").parquet(table)
    manifest = RunManifest.from_json((out / "runs" / "v1" / RUN_MANIFEST).read_text())
    run_config = config(baseline.data, out, "redis://unused", "r2")
    ctx = Context(
        run_config, spark, RunDir(out, "r2"), RunManifest("r2", id_types=manifest.id_types)
    )

    known = previous_embeddings(ctx)

    assert known is not None, ctx.manifest.params
    odd = {h for h, i in good.select("text_hash", "item_id").collect() if i % 2 == 1}
    assert {row.text_hash for row in known.collect()} == odd
    assert "not unit vectors" in ctx.manifest.params["embeddings_not_reused"]


def _embeddings(spark, run: Path) -> dict[object, np.ndarray]:
    rows = spark.read.parquet(str(run / "item_embeddings")).collect()
    return {row.item_id: np.asarray(row.embedding, dtype=np.float32) for row in rows}
