"""Time the exact scoring kernel at MovieLens-25M scale against its peers, in one process.

    python -m benchmarks.scoring [--users U] [--items I] [--dim D] [--n N]
                                 [--interactions X] [--min-seen A] [--max-seen B]
                                 [--peer-users P] [--spark-users S] [--als-users A]
                                 [--block-users B] [--check-users C] [--threads T]

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
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import scoring_peers, scoring_spark
from benchmarks.synthetic import Shape, generate
from jobs.topn import prepare_items, set_threads, top_n_unseen
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


def run_ours(data, n: int) -> dict:
    """Score every user with the kernel; return seconds, the lists and peak extra memory."""
    reset_peak()
    base = rss_mb()
    start = time.perf_counter()
    table = prepare_items(data.item_vecs, n)
    top = top_n_unseen(data.user_vecs, table, data.seen_indptr, data.seen_indices, n)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "top": top, "peak_mb": rss_mb("VmHWM") - base}


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
    warm = min(len(data.user_vecs), 512)  # compile (or load cached) numba code outside timing
    top_n_unseen(data.user_vecs[:warm], data.item_vecs, data.seen_indptr[: warm + 1],
                 data.seen_indices, args.n)  # fmt: skip
    ours = run_ours(data, args.n)
    secs = ours["seconds"]
    print(f"ours: {secs:.1f} s, {args.users / secs:,.0f} users/s, "
          f"peak extra memory {ours['peak_mb']:.0f} MB")  # fmt: skip
    exact = check_exact(data, ours["top"], args.n, args.check_users, args.seed)
    print(f"exact: {exact} ({args.check_users} sampled users + the 10 heaviest, brute force)")
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
    return parser.parse_args()


if __name__ == "__main__":
    main()
