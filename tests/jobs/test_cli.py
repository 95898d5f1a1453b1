"""The `nightrec` command as a user meets it: exit status and one-line reasons on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def nightrec(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_bad_setting_exits_2_with_one_line_naming_it():
    proc = nightrec("run", "--top-n", "zero")

    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nightrec: --top-n: invalid literal for int() with base 10: 'zero'"
    ]


@pytest.mark.slow
def test_missing_input_fails_with_one_line_and_a_failed_manifest(tmp_path):
    proc = nightrec(
        "run",
        "--data",
        str(tmp_path / "absent"),
        "--out",
        str(tmp_path / "out"),
        "--run-id",
        "r",
        "--stages",
        "ingest,embed_items",
        "--spark-master",
        "local[1]",
    )

    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [  # the reason alone: no JVM or Spark start-up lines
        f"nightrec: run r failed: ingest: input not found: {tmp_path}/absent/ratings.csv"
    ]
    manifest = json.loads((tmp_path / "out/runs/r/manifest.json").read_text())
    assert manifest["status"] == "failed" and "input not found" in manifest["reason"]
