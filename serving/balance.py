"""Keep-alive connections spread evenly over the gunicorn workers of `nightrec serve`.

The workers accept from one listening socket. When many connections open at once (a load
balancer filling its pool, a proxy restarting, the benchmark's 32), the worker that wakes
first takes nearly all of them: 28 to 32 of 32 in six bursts on an idle server. A connection
stays with the worker that accepted it for its whole keep-alive life, so that one worker
(one GIL) answers most of the traffic while the others idle, and its queue sets the p99.

`ConnectionBoard` is a small table shared by the workers (anonymous shared memory that the
master maps before it forks them): for each worker, its open connections and when it last
looked. `BalancedThreadWorker` is gunicorn's gthread worker, looking at the board before
each accept: a worker holding a connection or more over the average of the live workers
stops accepting until the others catch up; they take the waiting connections from the
socket's queue. A worker two or more over the average also closes each connection it answers
(`Connection: close`), so that connections kept alive from before (a worker restarted, the
others took its clients) move to the worker under its share as their clients reconnect. A
worker that has not looked for `STALE_SECONDS` (starting, stopping or stuck) counts as not
there, so it keeps no connection waiting longer than that: the others accept them all, as
gunicorn does on its own.
"""

from __future__ import annotations

import mmap
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

STALE_SECONDS = 2.0  # an idle worker looks about once a second (gthread's poll timeout)


class ConnectionBoard:
    """Each worker's open connections and last look, in memory every worker shares.

    The master claims a slot for each worker before it forks it (`seat_workers`); after
    that only the worker writes to its slot, and releases it when it stops.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, slots * 2 * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self._cells = memoryview(self._memory).cast("d")  # [held, looked at] per slot

    def claim(self, taken: set[int]) -> int | None:
        """Return a free slot for a worker about to start (None: all taken, it goes without)."""
        for slot in range(self.slots):
            if slot not in taken:
                self.release(slot)
                return slot
        return None

    def release(self, slot: int | None) -> None:
        """Forget the worker of slot (it stops, or is gone)."""
        if slot is not None:
            self._cells[2 * slot] = self._cells[2 * slot + 1] = 0.0

    def may_accept(self, slot: int, held: int, now: float) -> bool:
        """Record that the worker of slot holds `held` connections; return whether it may
        accept another: it holds less than the live workers' average plus one.

        Args:
            now: `time.monotonic()` (one clock for every process of the machine).
        """
        self._cells[2 * slot], self._cells[2 * slot + 1] = float(held), now
        return held < self.average(slot, held, now) + 1

    def average(self, slot: int, held: int, now: float) -> float:
        """Return the live workers' average connections, with `held` for slot's worker."""
        cells = self._cells
        total, live = float(held), 1
        for other in range(self.slots):
            looked = cells[2 * other + 1]
            if other != slot and looked and now - looked <= STALE_SECONDS:
                total += cells[2 * other]
                live += 1
        return total / live


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker that accepts only while it holds no more than its share,
    and ends connections after answering them while it holds well over it.

    gthread's loop compares its open connections with `worker_connections` before each poll
    and stops accepting at that limit; here the limit drops to what the worker holds while
    the board says it holds more than its share. The board and this worker's slot are set
    by the master (`seat_workers`) before the fork.
    """

    board: ConnectionBoard | None = None
    board_slot: int | None = None
    over_share = False  # set before each poll: the board said no to more connections

    @property
    def worker_connections(self) -> int:
        limit = self._connection_limit
        board, slot, held = self.board, self.board_slot, self.nr_conns
        if board is None or slot is None or held >= limit or not self.alive:
            self.over_share = False
            return limit
        self.over_share = not board.may_accept(slot, held, time.monotonic())
        return held if self.over_share else limit

    @worker_connections.setter
    def worker_connections(self, limit: int) -> None:  # gunicorn's, from the settings
        self._connection_limit = limit

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Answer a request (in a pool thread); a worker holding two or more connections over
        the average closes this one after the answer (`Connection: close`). Its client
        reconnects, and since this worker is not accepting, to another one: connections
        kept alive since before a worker restarted move over as they are used."""
        if self.over_share and self.board is not None and self.board_slot is not None:
            held = self.nr_conns  # the board is read only while the worker refuses connections
            if held >= self.board.average(self.board_slot, held, time.monotonic()) + 2:
                req.must_close = True
        return super().handle_request(req, conn)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Stop (SIGTERM): leave the board at once, since a stopping worker accepts no more."""
        if self.board is not None:
            self.board.release(self.board_slot)
        super().handle_exit(sig, frame)


def seat_workers(board: ConnectionBoard) -> Any:
    """Return gunicorn's `pre_fork` hook giving each new worker board and a free slot of it.

    A slot is free once its worker is gone from the master's table; claiming it clears what
    a killed worker left there (a worker that stopped by itself left already).
    """

    def pre_fork(server: Any, worker: Any) -> None:
        taken = {getattr(w, "board_slot", None) for w in server.WORKERS.values()}
        worker.board = board
        worker.board_slot = board.claim({slot for slot in taken if slot is not None})

    return pre_fork
