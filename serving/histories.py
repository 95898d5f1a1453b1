"""Every user's interactions in a run, packed for the API: the history the explorer shows and
the seen items search leaves out, from one table.

The layout is CSR: users in sorted id order, each user's interactions in one contiguous run
sorted by index row, so that search's seen items are a slice (no copy, no sort per query);
a history request sorts its user's run by time. Memory is 12 bytes per interaction (index
row int32, rating float32, epoch seconds uint32; int64 only when a time does not fit) plus
the user-id dict (about 100 bytes per user).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

UINT32_MAX = np.iinfo(np.uint32).max


@dataclass(frozen=True)
class Recent:
    """A user's latest interactions, most recent first: index rows, ratings, epoch seconds."""

    rows: np.ndarray
    ratings: np.ndarray
    times: np.ndarray
    total: int


@dataclass(frozen=True)
class Histories:
    """Every user's interactions as index rows, ratings and times (see the module docstring).

    Attributes:
        users: each user's position, by the string form of the user id, in sorted id order.
        starts: (users + 1,) offsets; user p's interactions are [starts[p], starts[p + 1]).
        rows: the index row of each interaction (read-only).
        ratings: the rating of each interaction.
        times: the time of each interaction in epoch seconds (0 when the input had none).
    """

    users: dict[str, int]
    starts: np.ndarray
    rows: np.ndarray
    ratings: np.ndarray
    times: np.ndarray

    def _span(self, user_key: str) -> tuple[int, int]:
        position = self.users.get(user_key)
        if position is None:
            return 0, 0
        return int(self.starts[position]), int(self.starts[position + 1])

    def count(self, user_key: str) -> int:
        """Return how many interactions the user has (0 for a user without any)."""
        start, end = self._span(user_key)
        return end - start

    def seen_rows(self, user_key: str) -> np.ndarray:
        """Return the sorted index rows the user interacted with (a read-only view)."""
        start, end = self._span(user_key)
        return self.rows[start:end]

    def recent(self, user_key: str, n: int) -> Recent:
        """Return the user's n latest interactions, most recent first (ties by index row)."""
        start, end = self._span(user_key)
        rows, times = self.rows[start:end], self.times[start:end]
        order = np.lexsort((rows, -times.astype(np.int64)))[:n]
        return Recent(rows[order], self.ratings[start:end][order], times[order], end - start)

    def sample_users(self, k: int) -> list[str]:
        """Return the first k user ids in id order (to offer on the explorer page)."""
        return list(islice(self.users, k))


def build_histories(user_ids: Any, rows: Any, ratings: Any, times: Any) -> Histories:
    """Pack interactions into `Histories`.

    Args:
        user_ids: the user id of each interaction (ints or strings, as the job wrote them).
        rows: the index row of each interaction; rows below 0 (items the index lacks) are
            left out.
        ratings: the rating of each interaction.
        times: epoch seconds of each interaction.
    """
    import pandas as pd

    rows = np.asarray(rows, dtype=np.int64)
    keep = rows >= 0
    codes, users = pd.factorize(pd.Series(user_ids)[keep], sort=True)
    rows = rows[keep]
    ratings = np.asarray(ratings, dtype=np.float32)[keep]
    times = np.asarray(times, dtype=np.int64)[keep]
    order = np.lexsort((-times, rows, codes))  # by user, then row (then newest first)
    counts = np.bincount(codes, minlength=len(users))
    starts = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    small = len(times) == 0 or (times.min() >= 0 and times.max() <= UINT32_MAX)
    packed_rows = rows[order].astype(np.int32)
    packed_rows.flags.writeable = False  # seen_rows hands out views of it
    return Histories(
        users={str(user): position for position, user in enumerate(users)},
        starts=starts,
        rows=packed_rows,
        ratings=ratings[order],
        times=times[order].astype(np.uint32 if small else np.int64),
    )
