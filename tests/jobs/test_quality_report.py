"""`nightrec eval`'s table and `nightrec report`'s pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from jobs.quality_table import format_quality
from jobs.report import write_report
from schemas.manifest import RunManifest
from tests.movielens import checkerboard, write_movielens


def metrics(ndcg: float) -> dict:
    return {
        "k": 10,
        "users": 5,
        "precision": 0.1,
        "recall": 0.2,
        "ndcg": ndcg,
        "map": 0.05,
        "coverage": 0.3,
        "novelty": 7.5,
        "diversity": 0.6,
    }


def quality(ndcg: float) -> dict:
    return {
        "protocol": "last 10 per user held out",
        "k": 10,
        "model": metrics(ndcg),
        "baselines": {"popularity": metrics(0.05), "ease": metrics(0.08)},
        "best_baseline": {"name": "ease", "ndcg": 0.08},
        "seconds": {"model": 3.0, "popularity": 0.2, "ease": 40.0},
        "coverage_by_decile": [0.0] * 9 + [0.5],
        "score_histogram": {"edges": [0.0, 1.0, 2.0], "counts": [3, 4]},
    }


def test_the_table_lists_our_model_then_baselines_best_first_and_ends_with_the_line():
    lines = format_quality(quality(0.09)).splitlines()
    assert lines[0] == "last 10 per user held out"
    assert lines[1].split() == [
        "model", "ndcg@10", "recall@10", "map@10", "prec@10",
        "coverage", "novelty", "diversity", "seconds",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[2:-1]] == ["ours", "ease", "popularity"]
    assert lines[2].split()[2:] == ["0.0900", "0.2000", "0.0500", "0.1000", "0.3000", "7.5000",
                                    "0.6000", "3.0"]  # fmt: skip
    assert lines[-1] == "quality: ndcg@10=0.0900 best_baseline=ease:0.0800 ease=0.0800"


def test_report_writes_a_self_contained_page_per_run_and_an_index(tmp_path):
    for number, ndcg in enumerate((0.09, 0.1), start=1):
        manifest = RunManifest(run_id=f"r{number}", status="published", version=f"r{number}")
        manifest.started_at = f"2026-11-2{number}T00:00:00+00:00"
        manifest.quality = quality(ndcg)
        manifest.stages = [{"stage": "ingest", "seconds": 1.5, "rows": 1, "detail": ""}]
        (tmp_path / "runs" / manifest.run_id).mkdir(parents=True)
        (tmp_path / "runs" / manifest.run_id / "manifest.json").write_text(manifest.to_json())

    paths = write_report(tmp_path)

    assert [p.name for p in paths] == ["r1.html", "r2.html", "index.html"]
    page = paths[1].read_text()
    assert page.count('src="data:image/png;base64,') == 4  # history, scores, deciles, stages
    assert "quality: ndcg@10=0.1000 best_baseline=ease:0.0800 ease=0.0800" in page
    for path in paths:
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert "<link" not in text and "<script" not in text
    index = paths[-1].read_text()
    assert index.index('href="r2.html"') < index.index('href="r1.html"')


@pytest.mark.slow
def test_eval_prints_every_baseline_and_the_quality_line(tmp_path):
    data = write_movielens(tmp_path / "board", *checkerboard(12))
    # Checkerboard users have 5 interactions each: hold out 1, not the default 10.
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", "eval", "--data", str(data), "--out", str(tmp_path / "out"),
         "--spark-master", "local[1]"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NIGHTREC_EVAL_HOLDOUT": "1"},
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    names = {line.split()[0] for line in lines if line.split()}
    assert {"ours", "popularity", "item_knn", "ease", "implicit_als", "spark_als"} <= names
    assert re.fullmatch(
        r"quality: ndcg@10=\d\.\d{4} best_baseline=[a-z_]+:\d\.\d{4} ease=\d\.\d{4}", lines[-1]
    )
