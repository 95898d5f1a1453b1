"""A run's files on a Hadoop filesystem URI, through the session's real Hadoop FileSystem
(file:// here; s3a://, hdfs:// take the same calls)."""

from __future__ import annotations

import pytest

from jobs.run_store import RunDir, latest_published, prune_runs
from jobs.storage import HadoopFiles, is_local
from schemas.manifest import RunManifest
from schemas.tables import POPULAR

IDS = {"user_id": "bigint", "item_id": "bigint"}


def test_manifests_tables_and_directories_round_trip_through_hadoop(spark, tmp_path):
    out = f"file://{tmp_path}/out"
    hadoop = HadoopFiles(spark)
    runs = {rid: RunDir(out, rid, hadoop) for rid in ("a", "b", "c")}
    history = (("a", "published", "2026-01-01"), ("b", "published", "2026-01-03"))
    for rid, status, finished in (*history, ("c", "failed", "2026-01-04")):
        runs[rid].write_manifest(RunManifest(rid, status=status, finished_at=finished))
    run = runs["c"]
    df = spark.createDataFrame([(7, 1, 2.5)], POPULAR.ddl("bigint", "bigint"))

    run.write_table(df, POPULAR, IDS)
    with run.local_dir("index") as directory:
        directory.mkdir()
        (directory / "manifest.json").write_text('{"dim": 3}')

    assert not is_local(out) and is_local(str(tmp_path))
    assert run.read_manifest().status == "failed"
    assert run.read_table(spark, POPULAR, IDS).collect() == df.collect()
    assert run.exists(POPULAR) and not runs["a"].exists(POPULAR)
    assert (tmp_path / "out/runs/c/index/manifest.json").read_text() == '{"dim": 3}'
    assert run.path("index") == f"{out}/runs/c/index"
    assert latest_published(run, exclude="c").run_id == "b"
    assert not list((tmp_path / "out/runs/c").glob(".*tmp"))  # renamed into place


def test_a_file_is_replaced_whole(spark, tmp_path):
    run = RunDir(f"file://{tmp_path}", "r", HadoopFiles(spark))

    run.write_text("note.txt", "first, longer text")
    run.write_text("note.txt", "second")

    assert run.read_text("note.txt") == "second"
    assert run.file_exists("note.txt") and not run.file_exists("other.txt")


@pytest.mark.parametrize("through_hadoop", [False, True], ids=["local", "hadoop"])
def test_retention_deletes_old_runs_but_never_one_in_use(spark, tmp_path, through_hadoop):
    hadoop = HadoopFiles(spark) if through_hadoop else None
    out = f"file://{tmp_path}" if through_hadoop else str(tmp_path)
    started = {"a": "2026-01-01", "b": "2026-01-02", "c": "2026-01-03", "d": "2026-01-04"}
    started |= {"e": "2026-01-05", "f": "2026-01-06"}  # e: this run; f: one started after it
    for rid, at in started.items():
        RunDir(out, rid, hadoop).write_manifest(RunManifest(rid, started_at=at))
    (tmp_path / "runs/x").mkdir()
    (tmp_path / "runs/x/manifest.json").write_text("{not json")  # a corrupt run
    run = RunDir(out, "e", hadoop)

    assert prune_runs(run, 0, set()) == []  # 0 keeps every run
    removed = prune_runs(run, 2, {"a"})

    assert sorted(removed) == ["b", "c", "d"]  # a is in use; e, f are the newest two
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a", "e", "f", "x"]
