"""Exact top-N over every item for a block of users, with each user's seen items masked.

Two passes, testable without Spark:

1. Filter: a block of users times every item in bf16 (float32 where there is no fast bf16),
   seen items set to -inf, the maximum of each group of 16 items, and a per-row floor: the
   n-th largest group maximum, which at least n unseen items reach. Items within a proven
   rounding bound of it are kept. The bound is per item: the filter's error on (u, v) is at
   most `rel_error` |u| |v| (plus a flush-to-zero term), so an item can reach the top n only
   if its approximate score is at least floor - rel_error |u| (W + |v|), W the largest norm
   among the items that set the floor. Popular items have norms several times the typical
   one; a bound from the largest norm alone keeps about 70% more candidates (measured on
   `benchmarks.synthetic` data). Engine "tiles" (CPU: item tiles that stay in cache, one
   block per worker thread, `jobs.topn_tiles`; bf16 or float32) or "torch" (any device,
   CUDA when torch sees one: `jobs.topn_torch`).
2. Exact (numba): the kept candidates are re-scored by the exact definition in
   `jobs.topn_exact` and ranked by score descending, then item index ascending.

The rounding bound makes the result independent of the GEMM (bf16 or float32, CPU or GPU,
any blocking): lists and scores are identical to a brute-force sort of the exact scores.
The full user x item score matrix is never built: users are taken `block_rows` at a time.
Threads: `set_threads` (a Spark task's cores); numba functions are cached on disk, so a
worker process loads them instead of compiling.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
import torch

from jobs.topn_exact import finish_rows
from jobs.topn_tiles import NEG_INF_BITS, finish_block, finish_block_f32, mask_tile, sorted_rows
from jobs.topn_torch import candidates

DEFAULT_BLOCK_ROWS = 256
TILE_ITEMS = 2048  # a (256, 2048) bf16 tile stays in L2; float32 ones of 1024 were no faster
MAX_ABS_FACTOR = 2.0**60  # keeps every product and sum far from float32 overflow
_TINY = 2.0**-126  # smallest normal float32: what flush-to-zero may lose per product


@dataclass(frozen=True)
class TopN:
    """Ranked lists for a batch of users.

    Attributes:
        indices: (users, n) int32 item indices, best first; -1 pads rows shorter than n.
        scores: (users, n) float32 scores; -inf in padded places.
        counts: (users,) int32 number of real items per row: min(n, items not seen).
    """

    indices: np.ndarray
    scores: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class ItemTable:
    """Item factors prepared once for many blocks of users (see `prepare_items`)."""

    engine: str  # "tiles" (CPU, bf16 or float32 tiles + numba) or "torch" (any device)
    approx_t: torch.Tensor  # (d, padded items) in the filter's dtype, on the filter's device
    exact: np.ndarray  # (items, d) float32, for the exact pass
    count: int
    group: int
    tile: int  # items per tile (engine "tiles")
    rel_error: float  # bound on |approx - exact| / (|u| |v|) for this dtype
    norms: np.ndarray  # (padded items,) float64 |v| of each item, 0 for padding
    group_norms: np.ndarray  # (padded items / group,) float64 largest |v| in each group
    max_abs: float
    norms_t: torch.Tensor  # norms and group_norms on the filter's device (engine "torch")
    group_norms_t: torch.Tensor

    @cached_property
    def tiles(self) -> list[torch.Tensor]:
        """The contiguous (d, tile) slices of approx_t, copied once per table."""
        return [t.contiguous() for t in self.approx_t.split(self.tile, dim=1)]


def seen_csr(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int):
    """Group (user, item) pairs into CSR arrays (indptr, indices) of each user's seen items."""
    order = np.argsort(user_idx, kind="stable")
    indices = np.asarray(item_idx, dtype=np.int64)[order]
    counts = np.bincount(np.asarray(user_idx, dtype=np.int64), minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices


def default_device() -> str:
    """Return "cuda" when torch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads for both passes (a Spark task's cores, not the host's)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (got {threads})")
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def prepare_items(
    item_vecs: np.ndarray,
    n: int,
    device: str | None = None,
    engine: str | None = None,
    dtype: torch.dtype | None = None,
) -> ItemTable:
    """Return the item side of the kernel for lists of length n.

    Args:
        item_vecs: (items, d) item factors.
        n: list length the table will serve.
        device: "cuda" or "cpu" (default: cuda when torch sees one).
        engine: "tiles" (CPU only) or "torch"; default: tiles on the CPU, torch on CUDA.
        dtype: the filter's GEMM, torch.bfloat16 or torch.float32; default: bf16 where the
            device multiplies it fast (CUDA, CPUs with AVX512-BF16/AMX), else float32.
            Results are the same either way; only the speed differs.
    """
    items = _checked(item_vecs, "item factors")
    device = device or default_device()
    dtype = dtype or _filter_dtype(device)
    engine = engine or ("tiles" if device == "cpu" else "torch")
    if dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"the filter's dtype must be torch.bfloat16 or torch.float32 ({dtype})")
    if engine == "tiles" and device != "cpu":
        raise ValueError(f"engine 'tiles' runs on the CPU only (device {device!r})")
    count, d = items.shape
    group = _group_size(count, n)
    tile = min(TILE_ITEMS, max(group, 1 << max(count - 1, 0).bit_length()))
    padded = np.zeros((math.ceil(count / tile) * tile, d), dtype=np.float32)
    padded[:count] = items
    norms = np.sqrt((padded.astype(np.float64) ** 2).sum(axis=1))
    group_norms = norms.reshape(-1, group).max(axis=1)
    return ItemTable(
        engine=engine,
        approx_t=torch.from_numpy(padded.T.copy()).to(device=device, dtype=dtype),
        exact=items,
        count=count,
        group=group,
        tile=tile,
        rel_error=_rel_error(dtype, d),
        norms=norms,
        group_norms=group_norms,
        max_abs=float(np.abs(items).max(initial=0.0)),
        norms_t=torch.from_numpy(norms).to(device),  # shares memory on the CPU
        group_norms_t=torch.from_numpy(group_norms).to(device),
    )


def _rel_error(dtype: torch.dtype, d: int) -> float:
    """Bound |approx - exact| over sum |u_i v_i| (<= |u| |v|), both sides' roundings included.

    Inputs rounded to the filter's unit, a float32 sum in any order, the output rounded to
    the unit again; then the exact definition's own float32 rounding; 10% slack on top.
    """
    unit = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-24
    accumulate = (d + 2) * 2.0**-24
    return ((1 + unit) ** 2 * (1 + accumulate) * (1 + unit) - 1 + 2.0**-23) * 1.1


def top_n_unseen(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray | ItemTable,
    seen_indptr: np.ndarray,
    seen_indices: np.ndarray,
    n: int,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str | None = None,
) -> TopN:
    """Return each user's exact top-n items by dot product, seen items excluded.

    Args:
        user_vecs: (users, d) user factors.
        item_vecs: (items, d) item factors, or an ItemTable from `prepare_items` (reused
            across calls; it fixes the device).
        seen_indptr: (users + 1,) CSR row pointers into seen_indices.
        seen_indices: item indices each user has seen (duplicates allowed).
        n: list length wanted.
        block_rows: users per block of the filter pass.
        device: "cuda" or "cpu" for the filter pass (default: cuda when available).
    """
    users = _checked(user_vecs, "user factors")
    if not isinstance(item_vecs, ItemTable):
        item_vecs = prepare_items(item_vecs, n, device)
    table = item_vecs
    n_users, n_eff = users.shape[0], max(0, min(n, table.count))
    if users.shape[1] != table.exact.shape[1]:
        raise ValueError(
            f"user and item factors must have the same width "
            f"(got {users.shape[1]} and {table.exact.shape[1]})"
        )
    if len(seen_indptr) != n_users + 1:
        raise ValueError(f"seen_indptr must have users + 1 = {n_users + 1} entries")
    out = TopN(
        indices=np.full((n_users, n_eff), -1, dtype=np.int32),
        scores=np.full((n_users, n_eff), -np.inf, dtype=np.float32),
        counts=np.zeros(n_users, dtype=np.int32),
    )
    if n_eff == 0 or n_users == 0:
        return out
    seen = np.asarray(seen_indptr, dtype=np.int64), np.asarray(seen_indices, dtype=np.int64)
    starts = range(0, n_users, max(1, block_rows))
    blocks = [(lo, min(n_users, lo + max(1, block_rows))) for lo in starts]
    if table.engine == "torch":
        for lo, hi in blocks:
            _torch_block(users, table, seen, n_eff, out, lo, hi)
        return out
    workers = min(len(blocks), numba.get_num_threads())
    # The workers set torch to one thread each (_tile_blocks); torch may then report that
    # count to this thread too (seen when it had not yet run a parallel region).
    previous = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers) as pool:
            jobs = [
                pool.submit(_tile_blocks, users, table, seen, n_eff, out, blocks[w::workers])
                for w in range(workers)
            ]
            for job in jobs:
                job.result()
    finally:
        torch.set_num_threads(previous)
    return out


def _error_terms(users: np.ndarray, table: ItemTable) -> tuple[np.ndarray, np.ndarray]:
    """Return per row (scale, tiny): |approx - exact| <= scale |v| + tiny for every item v.

    scale is rel_error |u| (the roundings are relative to sum |u_i v_i| <= |u| |v|);
    tiny is what flush-to-zero of subnormal inputs and products may lose, _TINY per term.
    """
    u64 = users.astype(np.float64)
    scale = table.rel_error * np.sqrt((u64**2).sum(axis=1))
    tiny = _TINY * users.shape[1] * (2 + np.abs(users).max(axis=1) + table.max_abs)
    return scale, tiny


def _tile_blocks(users, table: ItemTable, seen, n: int, out: TopN, blocks) -> None:
    """Score the given (lo, hi) blocks of users one after another on this thread (tiles).

    bf16 tiles go to numba as their int16 bits, float32 tiles as they are.
    """
    # One block per worker thread: torch must not fan out as well. OpenMP's thread count is
    # per thread, and a new thread's default is every core, whatever the caller set.
    torch.set_num_threads(1)
    tiles = table.tiles
    dtype = table.approx_t.dtype
    rows = max(hi - lo for lo, hi in blocks)
    with _scratch(dtype, len(tiles), rows, table.tile, table.tile // table.group) as (buf, maxima):
        _score_tiles(users, table, tiles, buf, maxima, seen, n, out, blocks)


def _score_tiles(users, table: ItemTable, tiles, buf, maxima, seen, n: int, out: TopN, blocks):
    """The body of `_tile_blocks`, on buffers of at least the largest block's rows."""
    view, fill, finish = _TILE_FORMATS[table.approx_t.dtype]
    values = buf.view(view).numpy()
    for lo, hi in blocks:
        size = hi - lo
        u = torch.from_numpy(users[lo:hi]).to(table.approx_t.dtype)
        ptr, idx = sorted_rows(seen[0][lo : hi + 1], seen[1])
        cursor = ptr[:-1].copy()
        for k, tile in enumerate(tiles):
            torch.mm(u, tile, out=buf[k, :size])
            mask_tile(values[k, :size], k * table.tile, table.count, ptr, idx, cursor,
                      table.group, maxima[:size, k], fill)  # fmt: skip
        finish(
            values[:, :size], maxima[:size].reshape(size, -1), table.group, n,
            *_error_terms(users[lo:hi], table), table.norms, table.group_norms,
            users[lo:hi].astype(np.float64), table.exact,
            out.indices[lo:hi], out.scores[lo:hi], out.counts[lo:hi],
        )  # fmt: skip


# How numba sees each tile dtype: the array's dtype (the maxima's too), -inf in it, and
# the finishing pass. bf16 has no numpy dtype: its int16 bits stand in.
_TILE_FORMATS = {
    torch.bfloat16: (torch.int16, NEG_INF_BITS, finish_block),
    torch.float32: (torch.float32, np.float32(-np.inf), finish_block_f32),
}

_spare: list[tuple[torch.Tensor, np.ndarray]] = []  # tile buffers free for the next call
_spare_lock = threading.Lock()
MAX_SPARE = 16


@contextmanager
def _scratch(
    dtype: torch.dtype, n_tiles: int, rows: int, tile: int, per_tile: int
) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Lend a (n_tiles, >= rows, tile) score buffer and its (>= rows, n_tiles, per_tile)
    group maxima, kept for later calls rather than freed.

    A block of scores is tens of MB. Allocating it on every call (the kernel is called once
    per Spark batch of 1,024 users) paid for mapping and faulting in fresh pages each time:
    8,192 users in batches of 1,024 took 16% longer on one thread and 42% on two, whose
    page faults contend for the process's memory map (medians of 4, AVX2 EPYC). Kept
    buffers are at most what the busiest call held at once.
    """
    maxima_dtype = torch.empty(0, dtype=_TILE_FORMATS[dtype][0]).numpy().dtype
    with _spare_lock:
        fits = [
            i for i, (buf, maxima) in enumerate(_spare)
            if buf.dtype == dtype and buf.shape[0] == n_tiles and buf.shape[2] == tile
            and buf.shape[1] >= rows and maxima.shape[2] == per_tile
        ]  # fmt: skip
        lent = _spare.pop(fits[0]) if fits else None
    if lent is None:
        lent = (
            torch.empty((n_tiles, rows, tile), dtype=dtype),
            np.empty((rows, n_tiles, per_tile), dtype=maxima_dtype),
        )
    try:
        yield lent
    finally:
        with _spare_lock:
            _spare.append(lent)
            del _spare[:-MAX_SPARE]


def _torch_block(users: np.ndarray, table: ItemTable, seen, n: int, out: TopN, lo: int, hi: int):
    """Fill rows lo..hi of out through the torch filter (any device) and the exact pass."""
    scale, tiny = _error_terms(users[lo:hi], table)
    ptr = seen[0][lo : hi + 1]
    indptr, cols, approx = candidates(users[lo:hi], table, (ptr, seen[1]), n, scale, tiny)
    finish_rows(
        indptr, cols, approx, scale, tiny, table.norms, users[lo:hi].astype(np.float64),
        table.exact, n, out.indices[lo:hi], out.scores[lo:hi], out.counts[lo:hi],
    )  # fmt: skip


def _filter_dtype(device: str) -> torch.dtype:
    """bf16 where the device multiplies it fast (CUDA, CPUs with AVX512-BF16/AMX)."""
    if device.startswith("cuda"):
        return torch.bfloat16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def _group_size(items: int, n: int) -> int:
    """Items per group: 16, smaller when there would be fewer than 4n groups."""
    group = 16
    while group > 1 and items // group < 4 * n:
        group //= 2
    return group


def _checked(vecs: np.ndarray, what: str) -> np.ndarray:
    """Return vecs as C-contiguous float32 (rows, d), or raise naming the first bad row."""
    arr = np.ascontiguousarray(vecs, dtype=np.float32)
    if not arr.flags.writeable:  # zero-copy Arrow buffers: torch.from_numpy wants writable
        arr = arr.copy()
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (got shape {arr.shape})")
    bad = ~(np.abs(arr) < MAX_ABS_FACTOR).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what} row {row} holds a value that is not finite or exceeds 2**60 in "
            f"magnitude ({arr[row][~(np.abs(arr[row]) < MAX_ABS_FACTOR)][0]!r})"
        )
    return arr
