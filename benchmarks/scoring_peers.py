"""The single-machine peers of the scoring benchmark: implicit's topk and faiss IndexFlatIP.

Each peer runs on the first `users` users with the same factors (and, for implicit, the same
seen lists as a CSR filter) and its time is scaled linearly to all users. Our kernel is timed
on the same users just before and just after each peer (the best of the two counts), so each
ratio compares runs made under the same machine load.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from jobs.topn import top_n_unseen


def seen_matrix(data, users: int) -> sp.csr_matrix:
    """Return the first users' seen items as a CSR matrix (implicit's filter format)."""
    indptr = data.seen_indptr[: users + 1]
    indices = data.seen_indices[: indptr[-1]]
    values = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(users, len(data.item_vecs)))


def run_implicit(data, n: int, users: int, threads: int) -> float:
    """Return implicit.cpu.topk's seconds for the first users, seen items filtered."""
    from implicit.cpu.topk import topk

    seen = seen_matrix(data, users)
    start = time.perf_counter()
    topk(data.item_vecs, data.user_vecs[:users], n, filter_query_items=seen, num_threads=threads)
    return time.perf_counter() - start


def run_faiss(data, n: int, users: int, threads: int) -> float:
    """Return faiss IndexFlatIP's search seconds for the first users (no masking)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(data.item_vecs.shape[1])
    index.add(data.item_vecs)
    start = time.perf_counter()
    index.search(np.ascontiguousarray(data.user_vecs[:users]), n)
    return time.perf_counter() - start


def run_ours(data, n: int, users: int) -> float:
    """Return our kernel's seconds for the first users (items prepared inside, as for peers)."""
    start = time.perf_counter()
    top_n_unseen(data.user_vecs[:users], data.item_vecs, data.seen_indptr[: users + 1],
                 data.seen_indices, n)  # fmt: skip
    return time.perf_counter() - start


def run_all(data, n: int, users: int, threads: int) -> dict:
    """Time both peers on a subset, each paired with our kernel on the same users.

    Returns {name: {seconds (scaled to all users), measured, ours (paired), users}}.
    """
    users = min(users, len(data.user_vecs))
    scale = len(data.user_vecs) / users
    out = {}
    for name, fn in (("implicit", run_implicit), ("faiss", run_faiss)):
        before = run_ours(data, n, users)
        measured = fn(data, n, users, threads)
        ours = min(before, run_ours(data, n, users))
        out[name] = {"seconds": measured * scale, "measured": measured, "ours": ours,
                     "users": users}  # fmt: skip
    return out
