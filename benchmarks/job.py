"""Time the whole nightly job on the bundled sample: cold (no earlier run) and warm
(embeddings reused), each as a fresh `nightrec run` process, with seconds per stage.

    python -m benchmarks.job [--data DIR] [--top-n N]

Targets on the 2-core development machine: cold under 120 s, warm under 45 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving.local_redis import free_port, server_command, wait_for

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"cold": 120.0, "warm": 45.0}


def timed_run(out: Path, redis_url: str, run_id: str, data: str, top_n: int) -> dict:
    """Run `nightrec run` in a new process; return wall seconds and the manifest's stages."""
    cmd = [
        sys.executable,
        "-m",
        "jobs",
        "run",
        "--data",
        data,
        "--out",
        str(out),
        "--redis-url",
        redis_url,
        "--run-id",
        run_id,
        "--top-n",
        str(top_n),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark run {run_id} failed:\n{proc.stderr[-2000:]}")
    manifest = json.loads((out / "runs" / run_id / "manifest.json").read_text())
    return {"seconds": seconds, "stages": manifest["stages"], "counts": manifest["counts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "ml-latest-small"))
    parser.add_argument("--top-n", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightrec-bench-") as tmp:
        out, port = Path(tmp), free_port()
        (out / "redis").mkdir()
        server = subprocess.Popen(
            server_command(port, out / "redis", daemonize=False), stdout=subprocess.DEVNULL
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            wait_for(url)
            results = {
                name: timed_run(out, url, name, args.data, args.top_n) for name in ("cold", "warm")
            }
        finally:
            server.terminate()
            server.wait()
    report(results)


def report(results: dict) -> None:
    stages = [s["stage"] for s in results["cold"]["stages"]]
    print(f"{'stage':<14}" + "".join(f"{name:>10}" for name in results))
    for i, stage in enumerate(stages):
        cells = "".join(f"{r['stages'][i]['seconds']:>10.1f}" for r in results.values())
        print(f"{stage:<14}{cells}")
    print(f"{'wall (all)':<14}" + "".join(f"{r['seconds']:>10.1f}" for r in results.values()))
    warm = results["warm"]["counts"]
    print(f"warm run encoded {warm['items_encoded']} items, reused {warm['items_reused']}")
    verdict = " ".join(
        f"{name}={r['seconds']:.1f}s(target<{TARGETS[name]:.0f}s:"
        f"{'met' if r['seconds'] < TARGETS[name] else 'MISSED'})"
        for name, r in results.items()
    )
    print(f"job: {verdict}")


if __name__ == "__main__":
    main()
