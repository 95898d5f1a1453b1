"""Load the API under gunicorn against a bare reference app, from separate processes.

    python -m benchmarks.api [--data DIR] [--out DIR --redis-url URL] [--duration S]
                             [--warmup S] [--max-requests N] [--load-procs P]

Starts a private redis-server, publishes a version with one real `nightrec run` (or reuses
`--out` and `--redis-url`), starts `nightrec serve` and `benchmarks.reference_app` under
gunicorn with the same workers and threads, and loads them over loopback keep-alive
connections from load-generator processes (asyncio, raw HTTP/1.1). Prints requests/s,
p50/p99 and errors per scenario, the ratios, and a verdict line against the targets on the
2-core machine: recommendations >= 0.8x the reference at 32 connections with p99 <= 25 ms,
search p50 <= 10 ms on one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
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
from urllib.parse import urlencode

import numpy as np

from serving.local_redis import free_port, server_command, wait_for

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WORKERS, THREADS = 2, 4
TARGETS = {"recs_ratio": 0.8, "recs_p99_ms": 25.0, "search_p50_ms": 10.0}
REQUEST_TIMEOUT = 5.0
QUERIES = (
    "scary zombie movies",
    "romantic comedy in paris",
    "space adventure with aliens",
    "animated film for kids",
    "heist movie with a twist",
    "world war two drama",
    "superhero origin story",
    "haunted house horror",
    "courtroom thriller",
    "coming of age high school",
    "serial killer detective",
    "musical about dancers",
    "time travel paradox",
    "post apocalyptic survival",
    "mafia family crime",
    "buddy cop action comedy",
    "pirates on the high seas",
    "dragons and wizards",
    "robot artificial intelligence",
    "boxing underdog sports",
    "vampire love story",
    "spy espionage cold war",
    "road trip friendship",
    "disaster movie earthquake",
    "western gunslinger revenge",
    "martial arts kung fu",
    "submarine naval battle",
    "political conspiracy",
    "dinosaurs theme park",
    "talking animals cartoon",
    "prison escape",
    "alien invasion earth",
    "shark attack ocean",
    "fairy tale princess",
    "zombie apocalypse comedy",
    "psychological mind bending thriller",
    "biography of a musician",
    "teen slasher summer camp",
    "samurai japan",
    "christmas family movie",
    "mountain climbing survival",
    "bank robbery gone wrong",
    "ghost story in a hotel",
    "cyberpunk hackers",
    "medieval knights battle",
    "stand up comedy",
    "jazz age new york",
    "car chase racing",
    "documentary about nature",
    "monster in the lake",
)
VARIANTS = (
    "",
    "film",
    "movie",
    "classic",
    "new",
    "best",
    "old",
    "funny",
    "dark",
    "british",
    "american",
    "french",
    "cult",
    "epic",
    "short",
    "long",
    "award winning",
    "indie",
    "remake",
    "sequel",
    "story",
    "tale",
    "picture",
    "flick",
    "feature",
    "drama",
    "series",
    "original",
    "modern",
    "vintage",
    "famous",
    "obscure",
    "great",
    "good",
    "strange",
    "quiet",
    "loud",
    "sad",
    "happy",
    "weird",
)


@dataclass(frozen=True)
class Scenario:
    """One load run: a server port, the request paths to cycle over, the connections."""

    name: str
    port: int
    paths: tuple[str, ...]
    connections: int


@dataclass(frozen=True)
class Load:
    """Bounds of every load run: seconds of warm-up and measurement, a request cap."""

    warmup: float
    duration: float
    max_requests: int
    processes: int


@dataclass(frozen=True)
class Result:
    """What one scenario measured."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Return the q-th percentile latency in ms (NaN with no request)."""
        return float(np.percentile(self.latencies_ms, q)) if self.requests else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(length)
    return status


class _Tally:
    """Per-process counters shared by its connections (one event loop: no locks)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.latencies: list[float] = []
        self.errors = 0
        self.last = 0.0


async def _connection(paths, port, first, stride, warm_at, end_at, tally) -> None:
    """Send requests on one keep-alive connection until end_at or the budget is spent."""
    reader = writer = None
    index = first
    while time.monotonic() < end_at and len(tally.latencies) < tally.budget:
        path = paths[index % len(paths)]
        index += stride
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            status = 0
            if writer is not None:
                writer.close()
            writer = None
        elapsed = time.perf_counter() - start
        if time.monotonic() >= warm_at:
            tally.last = time.monotonic()
            if status == 200:
                tally.latencies.append(elapsed * 1000.0)
            else:
                tally.errors += 1
    if writer is not None:
        writer.close()


async def _process_load(scenario, process, load, warm_at, end_at) -> tuple[list, int, float]:
    """Run this process's share of a scenario's connections; return latencies, errors, end."""
    share = range(process, scenario.connections, load.processes)
    tally = _Tally(max(1, load.max_requests // load.processes))
    await asyncio.gather(
        *(
            _connection(
                scenario.paths, scenario.port, c, scenario.connections, warm_at, end_at, tally
            )
            for c in share
        )
    )
    return tally.latencies, tally.errors, tally.last


def _load_process(args: tuple) -> tuple[list, int, float]:
    """Entry point of one load-generator process."""
    return asyncio.run(_process_load(*args))


def run_scenario(scenario: Scenario, load: Load) -> Result:
    """Load one server from `load.processes` separate processes; return what was measured."""
    processes = min(load.processes, scenario.connections)
    load = Load(load.warmup, load.duration, load.max_requests, processes)
    warm_at = time.monotonic() + 1.0 + load.warmup  # a second for the processes to start
    end_at = warm_at + load.duration
    jobs = [(scenario, p, load, warm_at, end_at) for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_load_process, jobs)
    latencies = np.array([ms for part in parts for ms in part[0]], dtype=float)
    errors = sum(part[1] for part in parts)
    last = max(part[2] for part in parts)
    seconds = max(0.0, min(end_at, last) - warm_at) if last else 0.0
    return Result(scenario.name, len(latencies), errors, seconds, latencies)


def user_ids(data: Path) -> list[str]:
    """Return the distinct user ids of the ratings, in numeric order."""
    with (data / "ratings.csv").open(newline="") as handle:
        ids = {row["userId"] for row in csv.DictReader(handle)}
    return sorted(ids, key=int)


def search_paths(users: list[str], distinct: bool) -> tuple[str, ...]:
    """Return search paths: every query different (base query x variant) or one repeated."""
    if not distinct:
        return (f"/v1/search?{urlencode({'q': QUERIES[0], 'n': 10})}",)
    paths = []
    for v, variant in enumerate(VARIANTS):
        for q, query in enumerate(QUERIES):
            text = f"{query} {variant}".strip()
            user = users[(v * len(QUERIES) + q) % len(users)]
            paths.append(f"/v1/search?{urlencode({'q': text, 'user_id': user, 'n': 10})}")
    return tuple(paths)


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


def start_api(stack: ExitStack, out: Path, redis_url: str, logs: Path) -> int:
    """Start `nightrec serve` for out and redis_url; return its port."""
    port = free_port()
    cmd = [sys.executable, "-m", "jobs", "serve", "--out", str(out), "--redis-url", redis_url]
    cmd += ["--host", HOST, "--port", str(port)]
    cmd += ["--workers", str(WORKERS), "--threads", str(THREADS)]
    start_server(stack, cmd, os.environ.copy(), logs / "api.log", f"http://{HOST}:{port}/readyz")
    return port


def start_reference(stack: ExitStack, redis_url: str, logs: Path) -> int:
    """Start the reference app under gunicorn (gthread, same workers/threads); return its port."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(WORKERS)]
    cmd += ["--threads", str(THREADS), "--keep-alive", "5", "-b", f"{HOST}:{port}"]
    cmd += ["benchmarks.reference_app:create_app()"]
    env = {**os.environ, "NIGHTREC_BENCH_REDIS_URL": redis_url}
    start_server(stack, cmd, env, logs / "reference.log", f"http://{HOST}:{port}/ref/users/1")
    return port


def scenarios(api: int, ref: int, users: list[str], connections: int) -> list[Scenario]:
    """Return the scenarios: reference and recommendations at `connections`, search at one."""
    recs = tuple(f"/v1/users/{u}/recommendations?n=10" for u in users)
    return [
        Scenario("reference", ref, tuple(f"/ref/users/{u}" for u in users), connections),
        Scenario("recommendations", api, recs, connections),
        Scenario("search (distinct q)", api, search_paths(users, True), 1),
        Scenario("search (repeated q)", api, search_paths(users, False), 1),
    ]


def report(results: dict[str, Result]) -> None:
    """Print one line per scenario, the ratios and the verdict line."""
    print(f"{'scenario':<22}{'requests':>9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for r in results.values():
        print(
            f"{r.name:<22}{r.requests:>9}{r.rps:>10.1f}{r.percentile(50):>9.2f}"
            f"{r.percentile(99):>9.2f}{r.errors:>8}"
        )
    ref, recs = results["reference"], results["recommendations"]
    search, repeat = results["search (distinct q)"], results["search (repeated q)"]
    ratio = recs.rps / ref.rps if ref.rps else 0.0
    print(
        f"ratios: recs/reference throughput={ratio:.2f}x "
        f"p99={recs.percentile(99) / ref.percentile(99):.2f}x; "
        f"search distinct/repeated p50={search.percentile(50) / repeat.percentile(50):.2f}x"
    )
    checks = {
        "recs": ratio >= TARGETS["recs_ratio"],
        "p99": recs.percentile(99) <= TARGETS["recs_p99_ms"],
        "search_p50": search.percentile(50) <= TARGETS["search_p50_ms"],
        "errors": sum(r.errors for r in results.values()) == 0,
    }
    verdict = " ".join(f"{k}={'met' if ok else 'MISSED'}" for k, ok in checks.items())
    print(
        f"api: recs_vs_reference={ratio:.2f}x recs_p99_ms={recs.percentile(99):.2f} "
        f"search_p50_ms={search.percentile(50):.2f} "
        f"targets(recs>=0.8x, p99<=25ms, search_p50<=10ms): "
        f"{'met' if all(checks.values()) else 'MISSED'} {verdict}"
    )


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "ml-latest-small"))
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--out", help="an already published out dir (with --redis-url)")
    parser.add_argument("--redis-url", help="the Redis holding --out's version")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--load-procs", type=int, default=2, help="load-generator processes")
    args = parser.parse_args()
    if bool(args.out) != bool(args.redis_url):
        parser.error("--out and --redis-url go together (both reuse a published version)")
    return args


def main() -> None:
    """Run the benchmark end to end and stop every process it started."""
    args = parse_args()
    load = Load(args.warmup, args.duration, args.max_requests, args.load_procs)
    users = user_ids(Path(args.data))
    with tempfile.TemporaryDirectory(prefix="nightrec-bench-api-") as tmp, ExitStack() as stack:
        out, url = (Path(args.out), args.redis_url) if args.out else (Path(tmp), None)
        if url is None:
            url = start_redis(stack, out / "redis")
            publish(out, url, args.data, args.top_n)
        api = start_api(stack, out, url, Path(tmp))
        ref = start_reference(stack, url, Path(tmp))
        results = {}
        for scenario in scenarios(api, ref, users, args.connections):
            results[scenario.name] = run_scenario(scenario, load)
            print(f"ran {scenario.name}", flush=True)
    report(results)


if __name__ == "__main__":
    main()
