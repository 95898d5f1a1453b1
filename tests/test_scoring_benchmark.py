"""`benchmarks.scoring --kernel-only`, the command of the GPU check (`scripts/gpu-check.sh`).

The GPU machines it is meant for have torch, numba and numpy but neither Spark, Redis's client,
TensorFlow nor the peers' libraries, and a session gets only minutes on one: a check that
breaks here, on the CPU, would be found there too late.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

# Runs the benchmark's main as `python -m` would, then names every module it should not need.
RUN_AND_LIST_HEAVY = """
import runpy, sys
sys.argv = ["benchmarks.scoring", *sys.argv[1:]]
runpy.run_module("benchmarks.scoring", run_name="__main__")
heavy = ("pyspark", "redis", "tensorflow", "faiss", "implicit", "scann", "sentence_transformers")
print("imported:", sorted({m.split(".")[0] for m in sys.modules} & set(heavy)))
"""


def test_kernel_only_times_each_block_size_and_needs_only_the_kernels_packages():
    small = ["--users", "400", "--items", "2000", "--interactions", "24000", "--dim", "16"]
    args = [*small, "--n", "20", "--kernel-only", "--device", "cpu", "--block-rows", "64,256"]

    run = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_HEAVY, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    timed = [line for line in lines if line.startswith("ours (")]
    assert [re.search(r"(\d+) users per block", line)[1] for line in timed] == ["64", "256"]
    last = next(line for line in lines if line.startswith("scoring-kernel:"))
    assert re.fullmatch(
        r"scoring-kernel: users=400 items=2000 dim=16 n=20 device=cpu block_rows=(64|256) "
        r"seconds=\d+\.\d\d exact=true",
        last,
    ), last
    assert lines[-1] == "imported: []"


def test_block_rows_must_be_positive_integers():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.scoring", "--kernel-only", "--block-rows", "256,0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 2
    assert "--block-rows: expected positive integers, comma-separated: '256,0'" in run.stderr
