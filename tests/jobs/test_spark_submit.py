"""The job's entry file under spark-submit, the project shipped as a zip (--py-files), as on
a cluster: a tiny data set, the output at a file:// URI (through Hadoop's FileSystem, as
s3a:// or hdfs:// would be), publish to a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.build_pyfiles import build
from serving.redis_client import connect
from serving.store import ListStore
from tests.jobs.test_pipeline import SIZE, TINY_MODEL
from tests.movielens import checkerboard, write_movielens

pytestmark = pytest.mark.slow


def test_spark_submit_with_the_zipped_project(redis_url, tmp_path):
    zipped = build(tmp_path / "nightrec.zip")
    data = write_movielens(tmp_path / "data", *checkerboard(SIZE))
    entry = tmp_path / "main.py"  # written beside the zip, outside the source tree
    env = {
        **os.environ,
        "PYTHONPATH": "",  # the project comes from the zip only
        "NIGHTREC_EVAL_HOLDOUT": "1",
        "NIGHTREC_TOP_N": "3",
        **{f"NIGHTREC_{k.upper()}": str(v) for k, v in TINY_MODEL.items()},
        "NIGHTREC_LOG_FORMAT": "json",
        "NIGHTREC_METRICS_FILE": str(tmp_path / "metrics" / "job.prom"),
    }
    spark_submit = Path(sys.executable).with_name("spark-submit")
    proc = subprocess.run(
        [str(spark_submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         "--conf", "spark.sql.shuffle.partitions=4", "--py-files", str(zipped), str(entry),
         "run", "--data", str(data), "--out", f"file://{tmp_path}/out", "--run-id", "s1",
         "--redis-url", redis_url],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "jobs").exists()  # nothing came from a source checkout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert '"event": "run"' in lines[-1] and '"status": "published"' in lines[-1]
    store = ListStore(connect(redis_url))
    assert store.current_version() == "s1"
    for user in range(1, SIZE + 1):
        assert store.user_list("s1", user)[0].item_id == 100 + user  # the withheld diagonal
    manifest = json.loads((tmp_path / "out/runs/s1/manifest.json").read_text())
    assert (manifest["status"], manifest["version"]) == ("published", "s1")
    assert (tmp_path / "out/runs/s1/index/manifest.json").exists()
    assert store.meta("s1")["index_dir"] == f"file://{tmp_path}/out/runs/s1/index"
    metrics = (tmp_path / "metrics" / "job.prom").read_text()
    assert 'nightrec_job_last_run_info{run_id="s1",status="published",version="s1"} 1.0' in metrics
