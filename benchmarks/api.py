"""Load the API under gunicorn against a bare reference app, from separate processes.

    python -m benchmarks.api [--data DIR] [--out DIR --redis-url URL] [--duration S]
                             [--warmup S] [--max-requests N] [--load-procs P] [--rounds R]
                             [--workers W --threads T] [--only recs|search]

Starts a private redis-server, publishes a version with one real `nightrec run` (or reuses
`--out` and `--redis-url`), starts `nightrec serve` and `benchmarks.reference_app` under
gunicorn with the same workers and threads, and loads them over loopback keep-alive
connections from load-generator processes (`benchmarks.loadgen`). The scenarios run in
`--rounds` rounds, the reference and the API back to back in each, so that the machine's
drift (it is noisy) hits both alike: the throughput ratio is the median of the per-round
ratios, and each figure the median over rounds (the worst latency: the maximum over
rounds). Prints requests/s, p50/p99/p99.9/max and errors per scenario, each round's p99 and
how its connections spread over the workers, the ratios, and a verdict line against the
targets on the 2-core machine: recommendations >= 0.8x the reference at 32 connections with
p99 <= 25 ms, search p50 <= 10 ms on one connection.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.loadgen import HOST, Load, Result, Scenario, connections_per_process, start_scenario
from benchmarks.search_queries import search_paths
from serving.local_redis import free_port, server_command, wait_for

REPO = Path(__file__).resolve().parent.parent
WORKERS, THREADS = 2, 4
TARGETS = {"recs_ratio": 0.8, "recs_p99_ms": 25.0, "search_p50_ms": 10.0}


def user_ids(data: Path) -> list[str]:
    """Return the distinct user ids of the ratings, in numeric order."""
    with (data / "ratings.csv").open(newline="") as handle:
        ids = {row["userId"] for row in csv.DictReader(handle)}
    return sorted(ids, key=int)


def publish(out: Path, redis_url: str, data: str, top_n: int) -> None:
    """Publish a version with one real `nightrec run` (run id "bench")."""
    cmd = [sys.executable, "-m", "jobs", "run", "--data", data, "--out", str(out)]
    cmd += ["--redis-url", redis_url, "--run-id", "bench", "--top-n", str(top_n)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the job failed:\n{proc.stderr[-3000:]}")
    print(f"published a version in {time.perf_counter() - start:.1f} s", flush=True)


def start_redis(stack: ExitStack, directory: Path) -> str:
    """Start a private loopback redis-server in directory; return its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = server_command(port, directory, daemonize=False)
    stack.callback(_stop, subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    url = f"redis://{HOST}:{port}/0"
    wait_for(url)
    return url


def start_server(stack: ExitStack, cmd: list[str], env: dict, log: Path, ready: str) -> None:
    """Start a gunicorn command (output to log) and wait until GET ready answers 200."""
    handle = stack.enter_context(log.open("wb"))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    stack.callback(_stop, proc)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{cmd[2:4]} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    sys.exit(f"{ready} not ready after 300 s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Terminate a child process (SIGTERM, then SIGKILL after 20 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_api(stack: ExitStack, out: Path, redis_url: str, logs: Path, layout: tuple) -> int:
    """Start `nightrec serve` for out and redis_url with (workers, threads); return its port."""
    port = free_port()
    cmd = [sys.executable, "-m", "jobs", "serve", "--out", str(out), "--redis-url", redis_url]
    cmd += ["--host", HOST, "--port", str(port)]
    cmd += ["--workers", str(layout[0]), "--threads", str(layout[1])]
    start_server(stack, cmd, os.environ.copy(), logs / "api.log", f"http://{HOST}:{port}/readyz")
    return port


def start_reference(stack: ExitStack, redis_url: str, logs: Path, layout: tuple) -> int:
    """Start the reference app under gunicorn (gthread, same workers/threads); return its port."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(layout[0])]
    cmd += ["--threads", str(layout[1]), "--keep-alive", "5", "-b", f"{HOST}:{port}"]
    cmd += ["benchmarks.reference_app:create_app()"]
    env = {**os.environ, "NIGHTREC_BENCH_REDIS_URL": redis_url}
    start_server(stack, cmd, env, logs / "reference.log", f"http://{HOST}:{port}/ref/users/1")
    return port


def scenarios(
    api: int, ref: int, users: list[str], connections: int, only: str | None
) -> list[Scenario]:
    """Return the scenarios: reference and recommendations at `connections`, search at one."""
    recs = tuple(f"/v1/users/{u}/recommendations?n=10" for u in users)
    listed = [
        Scenario("reference", ref, tuple(f"/ref/users/{u}" for u in users), connections),
        Scenario("recommendations", api, recs, connections),
        Scenario("search (distinct q)", api, search_paths(users, True), 1),
        Scenario("search (repeated q)", api, search_paths(users, False), 1),
    ]
    if only == "recs":
        return listed[:2]
    return listed[2:] if only == "search" else listed


@dataclass(frozen=True)
class Summary:
    """A scenario over all rounds: the median of each figure, the errors summed."""

    name: str
    requests: int
    rps: float
    p50: float
    p99: float
    p999: float
    worst: float
    errors: int

    @classmethod
    def of(cls, rounds: list[Result]) -> Summary:
        return cls(
            rounds[0].name,
            sum(r.requests for r in rounds),
            float(np.median([r.rps for r in rounds])),
            float(np.median([r.percentile(50) for r in rounds])),
            float(np.median([r.percentile(99) for r in rounds])),
            float(np.median([r.percentile(99.9) for r in rounds])),
            max(r.percentile(100) for r in rounds),
            sum(r.errors for r in rounds),
        )


def report(rounds: dict[str, list[Result]], spreads: dict[str, list[list[int]]]) -> None:
    """Print one line per scenario (medians over rounds), how each round's connections
    spread over the workers, the ratios and the verdict line."""
    summary = {name: Summary.of(results) for name, results in rounds.items()}
    print(
        f"{'scenario':<22}{'requests':>9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'p99.9 ms':>10}{'max ms':>9}{'errors':>8}"
    )
    for r in summary.values():
        print(
            f"{r.name:<22}{r.requests:>9}{r.rps:>10.1f}{r.p50:>9.2f}{r.p99:>9.2f}"
            f"{r.p999:>10.2f}{r.worst:>9.1f}{r.errors:>8}"
        )
    for name, per_round in spreads.items():
        p99 = " ".join(f"{r.percentile(99):.1f}" for r in rounds[name])
        spread = " ".join("/".join(map(str, counts)) or "-" for counts in per_round)
        print(f"{name} by round: p99 ms {p99}; connections per worker (mid-window) {spread}")
    checks, parts = {"errors": sum(r.errors for r in summary.values()) == 0}, []
    if "recommendations" in summary:
        per_round = [
            a.rps / b.rps if b.rps else 0.0
            for a, b in zip(rounds["recommendations"], rounds["reference"], strict=True)
        ]
        ratio, recs = float(np.median(per_round)), summary["recommendations"]
        print("recs/reference throughput per round: " + " ".join(f"{x:.2f}" for x in per_round))
        checks["recs"] = ratio >= TARGETS["recs_ratio"]
        checks["p99"] = recs.p99 <= TARGETS["recs_p99_ms"]
        parts += [f"recs_vs_reference={ratio:.2f}x", f"recs_p99_ms={recs.p99:.2f}"]
        parts.append(f"reference_p99_ms={summary['reference'].p99:.2f}")
    if "search (distinct q)" in summary:
        search, repeat = summary["search (distinct q)"], summary["search (repeated q)"]
        checks["search_p50"] = search.p50 <= TARGETS["search_p50_ms"]
        parts += [f"search_p50_ms={search.p50:.2f}", f"cached_search_p50_ms={repeat.p50:.2f}"]
    verdict = " ".join(f"{k}={'met' if ok else 'MISSED'}" for k, ok in checks.items())
    print(f"api: {' '.join(parts)} targets(recs>=0.8x, p99<=25ms, search_p50<=10ms): {verdict}")


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "ml-latest-small"))
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--out", help="an already published out dir (with --redis-url)")
    parser.add_argument("--redis-url", help="the Redis holding --out's version")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--load-procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--workers", type=int, default=WORKERS, help="gunicorn workers, both apps")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per worker")
    parser.add_argument("--only", choices=("recs", "search"), help="run one group of scenarios")
    args = parser.parse_args()
    if bool(args.out) != bool(args.redis_url):
        parser.error("--out and --redis-url go together (both reuse a published version)")
    return args


def main() -> None:
    """Run the benchmark end to end and stop every process it started."""
    args = parse_args()
    load = Load(args.warmup, args.duration, args.max_requests, args.load_procs)
    users, layout = user_ids(Path(args.data)), (args.workers, args.threads)
    with tempfile.TemporaryDirectory(prefix="nightrec-bench-api-") as tmp, ExitStack() as stack:
        out, url = (Path(args.out), args.redis_url) if args.out else (Path(tmp), None)
        if url is None:
            url = start_redis(stack, out / "redis")
            publish(out, url, args.data, args.top_n)
        api = start_api(stack, out, url, Path(tmp), layout)
        ref = start_reference(stack, url, Path(tmp), layout)
        print(f"gunicorn: {layout[0]} workers x {layout[1]} threads, {args.rounds} rounds")
        rounds: dict[str, list[Result]] = {}
        spreads: dict[str, list[list[int]]] = {}
        for number in range(args.rounds):
            for scenario in scenarios(api, ref, users, args.connections, args.only):
                running = start_scenario(scenario, load)
                if scenario.connections > 1:  # mid-window: every connection is open
                    time.sleep(max(0.0, running.warm_at + load.duration / 2 - time.monotonic()))
                    spreads.setdefault(scenario.name, []).append(
                        connections_per_process(scenario.port)
                    )
                rounds.setdefault(scenario.name, []).append(running.result())
            print(f"round {number + 1} done", flush=True)
    report(rounds, spreads)


if __name__ == "__main__":
    main()
