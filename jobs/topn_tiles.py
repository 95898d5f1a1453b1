"""The CPU filter pass over score tiles (numba + torch), fused with the exact ranking.

A block of users is multiplied with the items one cache-sized tile at a time (torch: bf16
on CPUs with AMX/AVX512-BF16, float32 elsewhere). While a tile is still in cache,
`mask_tile` sets the seen items to -inf and takes the maximum of every group of items.
`finish_block` then takes, per row, the n-th largest group maximum as a floor (at least n
unseen items reach it), rescans only the groups that reach the floor minus their rounding
bound (per group, from its largest item norm), and ranks those few candidates exactly.

Two tile formats, one finishing function each:
- bf16 tiles are read as int16 bits (`finish_block`): for values >= +0 the bits order like
  the floats, and a negative maximum only says "every value is <= 0".
- float32 tiles (`finish_block_f32`) compare the floats themselves; their floor comes from
  the maxima truncated to bf16 bits, a lower bound of each, so the same histograms find it.
"""

from __future__ import annotations

import numba
import numpy as np

from jobs.topn_exact import rank_row

NEG_INF_BITS = -128  # bf16 -inf (0xFF80) read as int16
NEG_INF_KEY = -32641  # its key; every finite value has a larger key


@numba.njit(cache=True, inline="always")
def _key(raw):  # pragma: no cover - compiled
    """Return the key of int16 bf16 bits: keys compare as the floats do (-0 just below +0)."""
    b = np.int32(raw)
    return b if b >= 0 else b ^ 0x7FFF


@numba.njit(cache=True, inline="always")
def _value(raw):  # pragma: no cover - compiled
    """Return the float32 value of int16 bf16 bits."""
    word = np.array([np.uint32(np.uint16(raw)) << 16], dtype=np.uint32)
    return word.view(np.float32)[0]


@numba.njit(cache=True, nogil=True)
def mask_tile(
    tile, lo, count, seen_ptr, seen_idx, cursor, group, maxima, fill
):  # pragma: no cover - compiled
    """Set seen and padding items of one (rows, T) tile of items lo.. to fill (-inf in the
    tile's format), in place, and write the maximum of each group of items into maxima
    (rows, T // group).

    bf16 tiles (int16 bits, fill NEG_INF_BITS): a raw int16 maximum is exact for values
    >= +0 and an upper bound of +0 otherwise. float32 tiles (fill -inf): exact maxima.
    seen_idx must be ascending within each row; cursor[r] is row r's position in it and moves
    past the items of this tile. Each row is reduced while it is still in L1.
    """
    rows, width = tile.shape
    hi = lo + width
    for r in range(rows):
        c, end = cursor[r], seen_ptr[r + 1]
        while c < end and seen_idx[c] < hi:
            tile[r, seen_idx[c] - lo] = fill
            c += 1
        cursor[r] = c
        for k in range(max(count - lo, 0), width):
            tile[r, k] = fill
        _group_maxima(tile[r], group, maxima[r])


@numba.njit(cache=True, nogil=True, inline="always")
def _group_maxima(row, group, out):  # pragma: no cover - compiled
    """Write the maximum of each group of items of one tile row into out.

    Groups of 16 (the usual size) fold their halves together as eight independent maxima,
    which the compiler turns into vector instructions: 2-3x faster than torch.amax over a
    (rows, groups, 16) int16 view, which it replaces.
    """
    if group == 16:
        for g in range(len(out)):
            s = g * 16
            a0, a1 = max(row[s], row[s + 8]), max(row[s + 1], row[s + 9])
            a2, a3 = max(row[s + 2], row[s + 10]), max(row[s + 3], row[s + 11])
            a4, a5 = max(row[s + 4], row[s + 12]), max(row[s + 5], row[s + 13])
            a6, a7 = max(row[s + 6], row[s + 14]), max(row[s + 7], row[s + 15])
            out[g] = max(max(max(a0, a4), max(a2, a6)), max(max(a1, a5), max(a3, a7)))
        return
    for g in range(len(out)):
        top = row[g * group]
        for j in range(1, group):
            top = max(top, row[g * group + j])
        out[g] = top


@numba.njit(cache=True, nogil=True)
def finish_block(
    tiles,
    maxima,
    group,
    n,
    scale,
    tiny,
    norms,
    group_norms,
    users,
    items,
    out_idx,
    out_scores,
    out_counts,
):  # pragma: no cover - compiled
    """Rank every row of a block from its tiles (n_tiles, rows, T) and raw group maxima.

    Row r's error on item v is at most scale[r] |v| + tiny[r] (norms, group_norms: |v| per
    padded item and the largest per group). A cheap integer test against the loosest
    threshold (the largest norm) comes first; the per-group and per-item thresholds are
    computed only for what passes it.
    """
    rows, width = tiles.shape[1], tiles.shape[2]
    per_tile, n_groups = width // group, maxima.shape[1]
    max_norm = group_norms.max()
    live = np.empty(n_groups, dtype=np.int64)
    gathered = np.empty(n_groups * group, dtype=np.int16)
    cols = np.empty(n_groups * group, dtype=np.int64)
    words = np.empty(n_groups * group, dtype=np.uint32)
    for r in range(rows):
        base = _base(maxima[r], n, scale[r], tiny[r], group_norms)
        loose = _key_at_most(base - scale[r] * max_norm)
        n_live = 0
        for g in range(n_groups):
            top = maxima[r, g]
            # a negative raw maximum only bounds the group by +0
            if (_key(top) if top >= 0 else 0) >= loose:
                upper = np.float64(_value(top)) if top >= 0 else 0.0
                if upper >= base - scale[r] * group_norms[g]:
                    live[n_live] = g
                    n_live += 1
        # Copy the live groups first: independent loads, so the cache misses overlap.
        for i in range(n_live):
            t, start = live[i] // per_tile, (live[i] % per_tile) * group
            gathered[i * group : (i + 1) * group] = tiles[t, r, start : start + group]
        m = 0
        for i in range(n_live * group):
            v = gathered[i]
            if _key(v) >= loose:  # seen and padding items (-inf) never pass
                g = live[i // group]
                col = (g // per_tile) * width + (g % per_tile) * group + i % group
                if np.float64(_value(v)) >= base - scale[r] * norms[col]:
                    cols[m] = col
                    words[m] = np.uint32(np.uint16(v)) << 16  # bf16 bits -> float32 bits
                    m += 1
        out_counts[r] = rank_row(
            cols[:m], words[:m].view(np.float32), scale[r], tiny[r], norms, users[r], items, n,
            out_idx[r], out_scores[r],
        )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def finish_block_f32(
    tiles,
    maxima,
    group,
    n,
    scale,
    tiny,
    norms,
    group_norms,
    users,
    items,
    out_idx,
    out_scores,
    out_counts,
):  # pragma: no cover - compiled
    """`finish_block` for float32 tiles (n_tiles, rows, T) and their float32 group maxima.

    The floor is the n-th largest maximum truncated to bf16 (`_base` on the top 16 bits):
    a lower bound of it, less than one bf16 step (2**-7 of it) lower, so n unseen items
    still reach it. The group and item tests compare the float32 values themselves, first
    against the loosest threshold (the largest norm's, a finite float32), which -inf (seen,
    padding) never passes.
    """
    rows, width = tiles.shape[1], tiles.shape[2]
    per_tile, n_groups = width // group, maxima.shape[1]
    max_norm = group_norms.max()
    live = np.empty(n_groups, dtype=np.int64)
    truncated = np.empty(n_groups, dtype=np.int16)
    gathered = np.empty(n_groups * group, dtype=np.float32)
    cols = np.empty(n_groups * group, dtype=np.int64)
    approx = np.empty(n_groups * group, dtype=np.float32)
    for r in range(rows):
        bits = maxima[r].view(np.int32)
        for g in range(n_groups):
            truncated[g] = bits[g] >> 16  # negative floats stay negative: not counted
        base = _base(truncated, n, scale[r], tiny[r], group_norms)
        loose = _float32_at_most(base - scale[r] * max_norm)
        n_live = 0
        for g in range(n_groups):
            top = maxima[r, g]
            if top >= loose and top >= base - scale[r] * group_norms[g]:
                live[n_live] = g
                n_live += 1
        # Copy the live groups first: independent loads, so the cache misses overlap.
        for i in range(n_live):
            t, start = live[i] // per_tile, (live[i] % per_tile) * group
            gathered[i * group : (i + 1) * group] = tiles[t, r, start : start + group]
        m = 0
        for i in range(n_live * group):
            v = gathered[i]
            if v >= loose:  # -inf (seen, padding) never passes: loose is finite
                g = live[i // group]
                col = (g // per_tile) * width + (g % per_tile) * group + i % group
                if v >= base - scale[r] * norms[col]:
                    cols[m] = col
                    approx[m] = v
                    m += 1
        out_counts[r] = rank_row(
            cols[:m], approx[:m], scale[r], tiny[r], norms, users[r], items, n,
            out_idx[r], out_scores[r],
        )  # fmt: skip


@numba.njit(cache=True)
def _float32_at_most(x):  # pragma: no cover - compiled
    """Return the largest finite float32 <= x (the lowest finite one when x is below it)."""
    lowest = np.float32(-3.4028234663852886e38)
    if x <= np.float64(lowest):
        return lowest
    f = np.float32(x)
    if np.float64(f) > x:
        f = np.nextafter(f, np.float32(-np.inf))
    return f


@numba.njit(cache=True)
def _base(row_maxima, n, scale, tiny, group_norms):  # pragma: no cover - compiled
    """Return floor - 2 tiny - scale W: item v may be in the top n if approx >= it - scale |v|.

    floor is the n-th largest group maximum (n unseen items reach it), W the largest norm
    of the groups reaching it; -inf when the maxima cannot be trusted (the n-th is not
    known to be >= +0), which keeps every unseen item. Two 256-bin histograms find the
    floor without a sort (high byte, then low byte within the chosen high byte); a third
    pass takes W.
    """
    high, above = _bin_of_nth(_byte_histogram(row_maxima, -1), n)
    if high < 0:
        return -np.inf
    low, _ = _bin_of_nth(_byte_histogram(row_maxima, high), n - above)
    kth = np.int16((high << 8) | low)
    witness = 0.0
    for g in range(len(row_maxima)):
        witness = max(witness, group_norms[g] if row_maxima[g] >= kth else 0.0)
    floor = np.float64(_value(np.int32(kth)))
    return floor - 2 * tiny - scale * witness


@numba.njit(cache=True)
def _byte_histogram(row_maxima, high):  # pragma: no cover - compiled
    """Return the 256-bin histogram of the values >= +0 by high byte (high < 0), or of the
    values whose high byte is `high` by low byte.

    No branches (values not counted go to a spare bin) and four interleaved histograms
    (no chain of increments to one bin): 8.6 against 20.8 us per row of 3,902 maxima with
    a branch per value and one histogram (AMD EPYC, AVX2).
    """
    counts = np.zeros((4, 257), dtype=np.int64)
    if high < 0:
        for g in range(len(row_maxima)):
            counts[g & 3, max((row_maxima[g] >> 8) + 1, 0)] += 1  # bin 0: negative values
        return counts[0, 1:] + counts[1, 1:] + counts[2, 1:] + counts[3, 1:]
    for g in range(len(row_maxima)):
        v = row_maxima[g]
        counts[g & 3, (v & 0xFF) if v >> 8 == high else 256] += 1
    return counts[0, :256] + counts[1, :256] + counts[2, :256] + counts[3, :256]


@numba.njit(cache=True)
def _key_at_most(x):  # pragma: no cover - compiled
    """Return the key of the largest bf16 value <= x: every value >= x has a key >= it.

    Never below the smallest finite key, so -inf (seen and padding items) is always below.
    """
    f32 = np.array([np.float32(x)], dtype=np.float32)
    if np.float64(f32[0]) > x:
        f32[0] = np.nextafter(f32[0], np.float32(-np.inf))
    b32 = f32.view(np.uint32)[0]
    b16 = np.int32(b32 >> 16)
    if (b32 & 0xFFFF) != 0 and b16 >= 0x8000:
        b16 += 1  # truncating a negative value rounds it up: step one bf16 further down
    if b16 == 0:
        b16 = 0x8000  # +0 -> -0, the lower of the two zeros
    raw = b16 - 0x10000 if b16 >= 0x8000 else b16
    return max(_key(raw), NEG_INF_KEY + 1)


@numba.njit(cache=True, inline="always")
def _bin_of_nth(hist, n):  # pragma: no cover - compiled
    """Return (bin holding the n-th largest value, count in higher bins), or (-1, 0)."""
    above, b = 0, len(hist) - 1
    while b >= 0 and above + hist[b] < n:
        above += hist[b]
        b -= 1
    return b, above


@numba.njit(cache=True, nogil=True)
def sorted_rows(ptr, idx):  # pragma: no cover - compiled
    """Return (ptr, idx) of a block's seen lists rebased to 0, each row sorted ascending."""
    local_ptr = ptr - ptr[0]
    local = idx[ptr[0] : ptr[-1]].copy()
    for r in range(len(ptr) - 1):
        local[local_ptr[r] : local_ptr[r + 1]].sort()
    return local_ptr, local
