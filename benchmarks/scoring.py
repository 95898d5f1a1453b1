"""Time the exact scoring kernel at MovieLens-25M scale against its peers, in one process.

    python -m benchmarks.scoring [--users U] [--items I] [--dim D] [--n N]
                                 [--interactions X] [--min-seen A] [--max-seen B]
                                 [--peer-users P] [--spark-users S] [--als-users A]
                                 [--block-users B] [--check-users C] [--threads T]
                                 [--device auto|cpu|cuda] [--block-rows R[,R...]]
                                 [--kernel-only]

On the same factors and seen lists: this project's kernel on every user; implicit's `topk`
with the seen items filtered, faiss `IndexFlatIP` (no masking: speed only) and Spark ALS's
`recommendForAll` algorithm, each on a user subset and scaled up linearly (said in the
output); an exactness check against a brute-force sort on sampled users; peak extra memory
(RSS high-water); Spark's overhead when the kernel runs inside the job's `score_users` code
(scoring alone, the Parquet write, gathering the seen lists); the job's Redis publish path
against a private redis-server. The last line:

    scoring: users=U items=I dim=D n=N seconds=S exact=true vs_implicit=X vs_faiss=Y vs_spark_als=Z

Targets on the 2-core development machine: exact=true, vs_implicit >= 1.5, vs_faiss >= 1.0,
vs_spark_als >= 10, peak extra memory under 2 GB.

`--kernel-only` times this project's kernel alone (no peers, Spark or Redis: it needs only
numpy, numba and torch), once per `--block-rows` value, and ends with

    scoring-kernel: users=U items=I dim=D n=N device=DEV block_rows=R seconds=S exact=true

for the fastest. With `--device cuda` it is the GPU check (`scripts/gpu-check.sh`); the
target on an H100 is the whole MovieLens-25M shape under 2 seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import scoring_peers, scoring_spark
from benchmarks.synthetic import Shape, generate
from jobs.topn import (
    DEFAULT_BLOCK_ROWS,
    default_device,
    prepare_items,
    set_threads,
    top_n_unseen,
)
from jobs.topn_exact import exact_scores

TARGETS = {"vs_implicit": 1.5, "vs_faiss": 1.0, "vs_spark_als": 10.0, "peak_mb": 2048.0}


def rss_mb(field: str = "VmRSS") -> float:
    """Return this process's resident memory (VmRSS) or its high-water mark (VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Reset the RSS high-water mark to the current RSS (Linux clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def run_ours(data, n: int, device: str | None = None, block_rows: int = DEFAULT_BLOCK_ROWS) -> dict:
    """Score every user with the kernel; return seconds, the lists, the device, the block
    size and peak extra memory (host RSS; on CUDA also the GPU's, as torch allocated it)."""
    cuda = (device or default_device()).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset_peak()
    base = rss_mb()
    start = time.perf_counter()
    table = prepare_items(data.item_vecs, n, device)
    top = top_n_unseen(
        data.user_vecs, table, data.seen_indptr, data.seen_indices, n, block_rows=block_rows
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "top": top,
        "device": str(table.approx_t.device),
        "block_rows": block_rows,
        "peak_mb": rss_mb("VmHWM") - base,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
    }


def check_exact(data, top, n: int, sample: int, seed: int) -> bool:
    """Compare sampled users' lists and scores with a brute-force sort of the exact scores."""
    rng = np.random.default_rng(seed)
    users = rng.choice(len(data.user_vecs), min(sample, len(data.user_vecs)), replace=False)
    heavy = np.argsort(np.diff(data.seen_indptr))[-10:]  # the heaviest users are checked too
    users = np.unique(np.concatenate([users, heavy]))
    scores = exact_scores(data.user_vecs[users], data.item_vecs)
    for row, u in zip(scores, users, strict=True):
        row[data.seen_indices[data.seen_indptr[u] : data.seen_indptr[u + 1]]] = -np.inf
        order = np.lexsort((np.arange(len(row)), -row))[:n]
        order = order[np.isfinite(row[order])]
        count = top.counts[u]
        if count != len(order) or not np.array_equal(top.indices[u, :count], order):
            return False
        if not np.array_equal(top.scores[u, :count], row[order]):
            return False
    return True


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    shape = Shape(args.users, args.items, args.interactions, args.dim, args.min_seen,
                  args.max_seen, args.seed)  # fmt: skip
    start = time.perf_counter()
    data = generate(shape)
    seen_total = int(data.seen_indptr[-1])
    print(f"data: {args.users} users, {args.items} items, {seen_total} interactions "
          f"(max {np.diff(data.seen_indptr).max()} per user), dim {args.dim}: "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    device = None if args.device == "auto" else args.device
    warm = min(len(data.user_vecs), 512)  # compile (or load cached) numba code, start CUDA
    top_n_unseen(data.user_vecs[:warm], data.item_vecs, data.seen_indptr[: warm + 1],
                 data.seen_indices, args.n, device=device)  # fmt: skip
    runs = [run_ours(data, args.n, device, rows) for rows in args.block_rows]
    for run in runs:
        gpu = f", {run['gpu_peak_mb']:.0f} MB on the GPU" if run["gpu_peak_mb"] else ""
        print(f"ours ({run['device']}, {run['block_rows']} users per block): "
              f"{run['seconds']:.2f} s, {args.users / run['seconds']:,.0f} users/s, "
              f"peak extra memory {run['peak_mb']:.0f} MB{gpu}")  # fmt: skip
    exact = all(check_exact(data, r["top"], args.n, args.check_users, args.seed) for r in runs)
    print(f"exact: {exact} ({args.check_users} sampled users + the 10 heaviest, brute force)")
    ours = min(runs, key=lambda run: run["seconds"])
    secs = ours["seconds"]
    if args.kernel_only:
        print(f"scoring-kernel: users={args.users} items={args.items} dim={args.dim} n={args.n} "
              f"device={ours['device']} block_rows={ours['block_rows']} seconds={secs:.2f} "
              f"exact={str(exact).lower()}")  # fmt: skip
        return
    peers = scoring_peers.run_all(data, args.n, args.peer_users, args.threads)
    spark = scoring_spark.run_all(data, ours["top"], args)
    peers["spark_als"] = spark["als"]
    report(args, secs, exact, ours["peak_mb"], peers, spark)


def report(args, secs: float, exact: bool, peak_mb: float, peers: dict, spark: dict) -> None:
    """Print the peers' figures, the Spark and Redis figures, targets, and the last line."""
    ratios = {}
    for name, peer in peers.items():
        # paired: the peer's time over ours on the same users, timed next to it
        ours = peer.get("ours", secs * peer["users"] / args.users)
        ratios[f"vs_{name}"] = peer["measured"] / ours
        print(f"{name}: {peer['seconds']:.1f} s for all users (measured {peer['measured']:.1f} s "
              f"on {peer['users']} users, scaled x{args.users / peer['users']:.1f}); ours on the "
              f"same users {ours:.2f} s; ratio {ratios[f'vs_{name}']:.2f}")  # fmt: skip
    overhead = spark["score_seconds"] / spark["kernel_seconds"] - 1
    stage = spark["stage_seconds"] / spark["kernel_seconds"] - 1
    print(
        f"spark score_users on {spark['users']} users (Spark's overhead over the bare kernel "
        f"{spark['kernel_seconds']:.2f} s, target <= 25%):\n"
        f"  scoring and writing from users with their seen lists: {spark['score_seconds']:.2f} s, "
        f"overhead {overhead:+.0%} ({spark['score_noop_seconds']:.2f} s into the noop sink, so "
        f"the Parquet write of {spark['users'] * args.n:,} rows takes about "
        f"{spark['score_seconds'] - spark['score_noop_seconds']:.2f} s)\n"
        f"  the whole stage, seen lists gathered from the interactions: "
        f"{spark['stage_seconds']:.2f} s, {stage:+.0%} "
        f"(gathering alone {spark['gather_seconds']:.2f} s; first run, starting the Python "
        f"workers: {spark['stage_cold_seconds']:.2f} s)"
    )
    print(
        f"redis publish: {spark['redis_users_per_s']:,.0f} users/s, "
        f"{spark['redis_bytes_per_user']:.0f} bytes/user ({spark['redis_users']} lists)"
    )
    met = {k: ratios[k] >= v for k, v in TARGETS.items() if k in ratios}
    met["peak_mb"] = peak_mb < TARGETS["peak_mb"]
    print("targets: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in met.items())
          + f", exact {'met' if exact else 'MISSED'}; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))  # fmt: skip
    print(f"scoring: users={args.users} items={args.items} dim={args.dim} n={args.n} "
          f"seconds={secs:.2f} exact={str(exact).lower()} "
          f"vs_implicit={ratios['vs_implicit']:.2f} vs_faiss={ratios['vs_faiss']:.2f} "
          f"vs_spark_als={ratios['vs_spark_als']:.2f}")  # fmt: skip


def parse_args() -> argparse.Namespace:
    default = Shape()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=default.users)
    parser.add_argument("--items", type=int, default=default.items)
    parser.add_argument("--dim", type=int, default=default.dim)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--interactions", type=int, default=default.interactions)
    parser.add_argument("--min-seen", type=int, default=default.min_seen)
    parser.add_argument("--max-seen", type=int, default=default.max_seen)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--peer-users", type=int, default=16_384, help="users timed per peer")
    parser.add_argument("--spark-users", type=int, default=16_384, help="users for Spark runs")
    parser.add_argument("--als-users", type=int, default=2048, help="users for Spark ALS")
    parser.add_argument("--block-users", type=int, default=4096, help="users per Spark block")
    parser.add_argument("--check-users", type=int, default=200, help="users checked exactly")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the kernel's filter pass runs (auto: cuda when torch sees one)",
    )
    parser.add_argument(
        "--block-rows",
        type=_sizes,
        default=[DEFAULT_BLOCK_ROWS],
        help="users per block of the kernel; several (comma-separated) are each timed",
    )
    parser.add_argument(
        "--kernel-only",
        action="store_true",
        help="time the kernel alone: no peers, Spark or Redis (the GPU check)",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device on this machine")
    return args


def _sizes(text: str) -> list[int]:
    """Parse "256,1024" into positive ints."""
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, comma-separated: {text!r}")
    return sizes


if __name__ == "__main__":
    main()
