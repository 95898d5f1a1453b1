"""The filter pass in plain torch ops, on any device (CUDA on a GPU machine; CPU in tests).

For a block of users: the product with every item in the table's dtype, seen items set to
-inf, group maxima, the n-th largest of them as a floor, and the CSR list of the items whose
approximate score reaches the floor minus their rounding bound (per item, from its norm).
`jobs.topn_exact` ranks them exactly on the CPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from jobs.topn import ItemTable


@torch.inference_mode()
def candidates(users: np.ndarray, table: ItemTable, seen, n: int, scale, tiny):
    """Return CSR (indptr, cols, approx) of the items that may be in each row's top n.

    scale, tiny: (rows,) float64 with |approx - exact| <= scale |v| + tiny for item v.
    """
    device = table.approx_t.device
    rows = len(users)
    u = torch.from_numpy(users).to(device=device, dtype=table.approx_t.dtype)
    scores = u @ table.approx_t  # (rows, padded items)
    scores[:, table.count :] = -math.inf
    seen_ptr, seen_idx = seen
    flat = seen_idx[seen_ptr[0] : seen_ptr[-1]] + np.repeat(
        np.arange(rows, dtype=np.int64) * scores.shape[1], np.diff(seen_ptr)
    )
    scores.view(-1).index_fill_(0, torch.from_numpy(flat).to(device), -math.inf)
    groups = scores.view(rows, -1, table.group)
    maxima = groups.amax(dim=2)
    norms, group_norms = table.norms_t, table.group_norms_t
    # n groups reach the n-th largest maximum, so at least n unseen items score that much,
    # exactly at least kth - scale W - tiny, W the largest norm among those groups.
    kth = maxima.topk(min(n, maxima.shape[1]), dim=1).values[:, -1:]
    witness = torch.where(maxima >= kth, group_norms, 0.0).amax(dim=1)
    scale_t = torch.from_numpy(np.asarray(scale, dtype=np.float64)).to(device)
    tiny_t = torch.from_numpy(np.asarray(tiny, dtype=np.float64)).to(device)
    base = kth[:, 0].double() - 2 * tiny_t - scale_t * witness
    if n > maxima.shape[1]:
        base.fill_(-math.inf)
    live = (maxima.double() >= base[:, None] - scale_t[:, None] * group_norms) & (
        maxima > -math.inf
    )
    g_row, g_col = live.nonzero(as_tuple=True)
    vals = groups[g_row, g_col]  # (live groups, group)
    item = g_col[:, None] * table.group + torch.arange(table.group, device=device)
    floor = base[g_row, None] - scale_t[g_row, None] * norms[item]
    hit = (vals.double() >= floor) & (vals > -math.inf)
    which, offset = hit.nonzero(as_tuple=True)
    cand_rows = g_row[which]
    cols = item[which, offset]
    approx = vals[which, offset].float()
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(cand_rows.cpu().numpy(), minlength=rows), out=indptr[1:])
    return indptr, cols.cpu().numpy(), approx.cpu().numpy()
